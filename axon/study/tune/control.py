"""Triton's model-control API as the tuner uses it: check, load a candidate, restore.

Facts this relies on (FIELD-NOTES, "Triton model control"; checked again 2026-11-30 on 2.51.0):

- ``load_model(name, config=json)`` reloads in place; the override REPLACES the whole config, so a
  candidate is the served config (``get_model_config``) with the tuned knobs edited, never a diff;
- a load Triton refuses leaves the previous config serving (so a failed candidate is never measured);
- an override sticks across a plain ``load_model(name)``; unloading then loading re-reads the
  model's config.pbtxt from the repository, which is how :meth:`ModelControl.restore` undoes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from axon.errors import AxonError
from axon.offline.repository import ServingOptions, apply_serving

READY_TIMEOUT_S = 120.0  # a reload of several python-backend instances takes seconds on 2 cores
POLL_S = 0.05
CALL_TIMEOUT_S = 10.0
LOAD_TIMEOUT_S = 300.0


class ServerGone(AxonError):
    """Triton stopped answering while a candidate loaded: not the candidate's failure."""


@dataclass(frozen=True)
class LoadResult:
    ok: bool
    seconds: float
    error: str | None = None  # Triton's message when it refused the candidate


def _message(exc: Exception) -> str:
    text = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return (text or str(exc)).strip().splitlines()[0]


class ModelControl:
    """One model on one server, under explicit model control.

    Parameters
    ----------
    url
        gRPC HOST:PORT.
    model
        The served model's name.
    """

    def __init__(self, url: str, model: str, ssl: bool = False, headers: dict[str, str] | None = None, log_path: Path | None = None):
        import tritonclient.grpc as grpcclient

        self.url, self.model = url, model
        # The server's log, when axon started the server: Triton's gRPC answer to a refused load is
        # "failed to poll from model repository"; the reason is in the log's error line.
        self.log_path = log_path
        self.headers = headers or None
        self.client = grpcclient.InferenceServerClient(url, ssl=ssl)
        self.initial: dict | None = None  # the served config before tuning, as Triton reports it

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ checks, before any load
    def served_config(self) -> dict:
        """The config Triton serves now (its JSON form, auto-completed fields included)."""
        from tritonclient.utils import InferenceServerException

        try:
            return self.client.get_model_config(self.model, headers=self.headers, as_json=True, client_timeout=CALL_TIMEOUT_S)["config"]
        except InferenceServerException as exc:
            raise AxonError(f"model {self.model!r} is not served at {self.url}: {_message(exc)}") from None

    def check(self) -> dict:
        """Raise AxonError unless the model is ready and the server takes explicit loads; return its config."""
        from tritonclient.utils import InferenceServerException

        try:
            ready = self.client.is_model_ready(self.model, headers=self.headers, client_timeout=CALL_TIMEOUT_S)
        except InferenceServerException as exc:
            raise AxonError(f"Triton at {self.url} did not answer: {_message(exc)}") from None
        if not ready:
            raise AxonError(f"model {self.model!r} is not served (not ready) at {self.url}")
        self.initial = self.served_config()
        # A plain load of the model as it is changes nothing under explicit control, and is refused
        # in the other modes: the one way to learn the mode before any candidate is measured.
        try:
            self.client.load_model(self.model, headers=self.headers, client_timeout=LOAD_TIMEOUT_S)
        except InferenceServerException as exc:
            raise AxonError(
                f"Triton at {self.url} refuses model loads ({_message(exc)}); axon tune loads each candidate "
                "through the model-control API: start tritonserver with --model-control-mode=explicit"
            ) from None
        self.wait_ready()
        return self.initial

    # ------------------------------------------------------------------ candidates
    def candidate_json(self, options: ServingOptions, batching: str) -> str:
        """The whole served config with the knobs set: the override Triton gets for a candidate."""
        if self.initial is None:
            raise AxonError("ModelControl.check() must run before candidates are built")
        config = json_format.ParseDict(self.initial, mc.ModelConfig())
        return json_format.MessageToJson(apply_serving(config, options, batching))

    def load(self, config_json: str) -> LoadResult:
        """Load a candidate and wait until the model is ready; the time covers both."""
        from tritonclient.utils import InferenceServerException

        offset = self._log_size()
        started = time.monotonic()
        try:
            self.client.load_model(self.model, config=config_json, headers=self.headers, client_timeout=LOAD_TIMEOUT_S)
        except InferenceServerException as exc:
            seconds = time.monotonic() - started
            if not self._live():
                # Triton 2.51 has crashed (SIGSEGV) on a reload here after dozens of reloads;
                # a dead server must not be mistaken for a refused candidate.
                raise ServerGone(f"Triton at {self.url} stopped answering while {self.model} loaded ({_message(exc)})") from None
            reason = self._logged_error(offset)
            return LoadResult(False, seconds, _message(exc) + (f" ({reason})" if reason else ""))
        self.wait_ready()
        return LoadResult(True, time.monotonic() - started)

    def _live(self) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self.client.is_server_live(headers=self.headers, client_timeout=CALL_TIMEOUT_S))
        except InferenceServerException:
            return False

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size if self.log_path else 0
        except OSError:
            return 0

    def _logged_error(self, offset: int) -> str | None:
        """The last error line about this model that the server logged since ``offset``."""
        if not self.log_path:
            return None
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return None
        errors = [ln for ln in text.splitlines() if ln.startswith("E") and self.model in ln]
        if not errors:
            return None
        message = errors[-1].split("] ", 1)[-1].strip().strip('"')
        return message.split("': ", 1)[-1]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.client.is_model_ready(self.model, headers=self.headers, client_timeout=CALL_TIMEOUT_S):
            if time.monotonic() > deadline:
                raise AxonError(f"model {self.model!r} not ready {timeout_s:.0f} s after its load at {self.url}")
            time.sleep(POLL_S)

    # ------------------------------------------------------------------ restore
    def restore(self) -> dict:
        """Unload, then load from the repository: the on-disk config, not the last override.

        Returns what was done, the seconds it took, and whether the served config now equals the
        one served before tuning (it does unless that one was itself an override).
        """
        started = time.monotonic()
        self.client.unload_model(self.model, headers=self.headers, client_timeout=LOAD_TIMEOUT_S)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.client.is_model_ready(self.model, headers=self.headers, client_timeout=CALL_TIMEOUT_S) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self.client.load_model(self.model, headers=self.headers, client_timeout=LOAD_TIMEOUT_S)
        self.wait_ready()
        now = self.served_config()
        return {"method": "unload, then load from the repository", "seconds": time.monotonic() - started, "matches_initial": now == self.initial}


def seed_options(config: dict) -> tuple[ServingOptions, bool]:
    """The seed's knobs from a served config (JSON form), and whether it batches dynamically."""
    batching = "dynamic_batching" in config
    groups = config.get("instance_group") or [{}]
    dyn = config.get("dynamic_batching") or {}
    params = {k: v.get("string_value") for k, v in (config.get("parameters") or {}).items()}
    defaults = ServingOptions()
    options = ServingOptions(
        max_batch_size=int(config.get("max_batch_size", 0)),
        max_queue_delay_us=int(dyn.get("max_queue_delay_microseconds", 0)),
        preferred_batch_sizes=tuple(int(s) for s in dyn.get("preferred_batch_size", ())),
        instances=int(groups[0].get("count", 1)),
        max_queue_size=int((dyn.get("default_queue_policy") or {}).get("max_queue_size", 0)),
        queue_timeout_us=int((dyn.get("default_queue_policy") or {}).get("default_timeout_microseconds", 0)),
        engine=params.get("engine") or defaults.engine,
        device=params.get("device") or defaults.device,
        threads=int(params.get("threads") or defaults.threads),
    )
    return options, batching
