"""User-facing errors.

Every problem a user can cause (bad input, a busy port, an unreachable server) is raised as
an :class:`AxonError`. The CLI prints its message on one line and exits with ``EXIT_USAGE``;
nothing else in axon catches broad exceptions, so real bugs still show their traceback.
"""

from __future__ import annotations

EXIT_USAGE = 2


class AxonError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(AxonError):
    """A dataset file that is missing, corrupt or not in the HIGGS layout."""


class ServerError(AxonError):
    """A Triton server that could not be started, reached or kept alive."""


class ServerDied(ServerError):
    """A server axon started died; the message was said the moment it was seen, before cleanup.

    The CLI does not repeat it: stopping what is left (stubs, shared memory) takes a moment,
    and the user should not wait that long to learn that the server is gone.
    """

    said = True
