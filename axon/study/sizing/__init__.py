"""``axon size``: how many trigger cores one server carries within the budget, and how many servers a farm needs.

By stage: :mod:`.measured` reads the inputs a measurement gave (capacity within the p99 budget,
client CPU per event, bytes per event) from records; :mod:`.arithmetic` turns them and the
user's numbers into the prediction (docs/sizing.md has the equations); :mod:`.verify` checks a
prediction with simulated trigger clients; :mod:`.show` prints the table and draws the plot.
"""
