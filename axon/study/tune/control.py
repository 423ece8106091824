"""Triton's model-control API as the tuner uses it: check, load a candidate, restore.

Facts this relies on (FIELD-NOTES, "Triton model control"; checked again 2026-11-30 on 2.51.0):

- ``load_model(name, config=json)`` reloads in place; the override REPLACES the whole config, so a
  candidate is the served config (``get_model_config``) with the tuned knobs edited, never a diff;
- a load Triton refuses leaves the previous config serving (so a failed candidate is never measured);
- an override sticks across a plain ``load_model(name)``; unloading then loading re-reads the
  model's config.pbtxt from the repository, which is how :meth:`ModelControl.restore` undoes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from axon.errors import AxonError
from axon.offline.repository import ServingOptions, apply_serving

READY_TIMEOUT_S = 60.0  # a reload of several python-backend instances takes seconds on 2 cores
POLL_S = 0.05
CALL_TIMEOUT_S = 10.0
# A load or unload: its own deadline, and meanwhile the server is watched every second (below).
# Triton 2.51 once crashed unloading a candidate and hung in a futex; a 300 s deadline then
# held the tune for 5 minutes per call.
LOAD_TIMEOUT_S = 60.0
WATCH_EVERY_S = 1.0
DEATH_SETTLE_S = 2.0  # after a failed call to a server that no longer answers: how long its death may take to show
HUNG_AFTER_S = 10.0  # no answer to "live?" for this long, the process alive: hung
# What Triton's log says when it dies of a signal (its handler prints "Signal (6) received."),
# and glibc's word for the heap corruption behind the 2.51 crash.
FATAL_MARKS = ("Signal (", "double free", "corrupted size", "free(): invalid")

T = TypeVar("T")
Watch = Callable[[], "str | None"]  # why the server process is unwell (exited, stopped), or None


class ServerGone(AxonError):
    """Triton died or hung while a candidate loaded: not the candidate's failure."""


@dataclass(frozen=True)
class LoadResult:
    ok: bool
    seconds: float
    error: str | None = None  # Triton's message when it refused the candidate
    crashed: bool = False  # it brought the server down, twice (axon.study.tune.run)


def process_state(pid: int | None) -> str | None:
    """Why the process is not running normally, from /proc: stopped (SIGSTOP) or traced; None otherwise."""
    if pid is None:
        return None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return {"T": "stopped (SIGSTOP or SIGTSTP): it answers nothing", "t": "stopped by a tracer"}.get(state)


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

    def __init__(
        self,
        url: str,
        model: str,
        ssl: bool = False,
        headers: dict[str, str] | None = None,
        log_path: Path | None = None,
        watch: Watch | None = None,
    ):
        import tritonclient.grpc as grpcclient

        self.url, self.model = url, model
        # The server's process, where axon started it: checked every second while a call is out.
        self.watch = watch
        self.gone: str | None = None  # the last ServerGone's reason, until the server is back
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
            return self.client.get_model_config(self.model, headers=self.headers, as_json=True, client_timeout=CALL_TIMEOUT_S)[
                "config"
            ]
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
            self.watched("load", lambda: self.client.load_model(self.model, headers=self.headers, client_timeout=LOAD_TIMEOUT_S))
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
        """Load a candidate and wait until the model is ready; the time covers both.

        Raises :class:`ServerGone` when the server dies or hangs meanwhile (:meth:`watched`).
        """
        from tritonclient.utils import InferenceServerException

        offset = self._log_size()
        started = time.monotonic()
        try:
            self.watched(
                "load",
                lambda: self.client.load_model(
                    self.model, config=config_json, headers=self.headers, client_timeout=LOAD_TIMEOUT_S
                ),
            )
        except InferenceServerException as exc:
            seconds = time.monotonic() - started
            problem = self._problem(offset)
            if problem is None and not self._live():
                # A killed server closes its sockets a moment before its death can be read: the
                # call fails first. Give the process and its log a moment to say what happened.
                deadline = time.monotonic() + DEATH_SETTLE_S
                while problem is None and time.monotonic() < deadline:
                    time.sleep(POLL_S)
                    problem = self._problem(offset)
            if problem is not None or not self._live():
                # Triton 2.51 has crashed (SIGSEGV) on a reload here after dozens of reloads;
                # a dead server must not be mistaken for a refused candidate.
                self.gone = problem or f"stopped answering ({_message(exc)})"
                raise ServerGone(f"Triton at {self.url} {self.gone} while {self.model} loaded") from None
            reason = self._logged_error(offset)
            return LoadResult(False, seconds, _message(exc) + (f" ({reason})" if reason else ""))
        self.wait_ready()
        return LoadResult(True, time.monotonic() - started)

    def watched(self, what: str, call: Callable[[], T]) -> T:
        """Run one server call in a thread; every second, check that the server lives meanwhile.

        The call keeps its own deadline. The checks: the process (exited, or stopped, where axon
        started it), Triton's log since the call began (a fatal signal), and a "live?" with a 1 s
        deadline (unanswered for :data:`HUNG_AFTER_S`: hung). Any of them raises
        :class:`ServerGone` at once, instead of waiting out the deadline on a server that
        will never answer. The main thread only waits on an event, so Ctrl-C and SIGTERM
        interrupt it at once.
        """
        offset = self._log_size()
        box: dict = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # handed to the main thread, which raises it
                box["error"] = exc
            finally:
                done.set()

        # A daemon: a call left hanging on a dead server must not hold axon's exit.
        threading.Thread(target=run, name=f"axon-tune-{what}", daemon=True).start()
        silent_since: float | None = None
        while not done.wait(WATCH_EVERY_S):
            problem = self._problem(offset)
            if problem is None:
                if self._live(WATCH_EVERY_S):
                    silent_since = None
                else:
                    silent_since = silent_since or time.monotonic()
                    if time.monotonic() - silent_since >= HUNG_AFTER_S:
                        problem = f"did not answer for {HUNG_AFTER_S:g} s (hung)"
            if problem is not None:
                self.gone = problem
                raise ServerGone(f"Triton at {self.url} {problem} during a model {what} of {self.model}")
        if "error" in box:
            raise box["error"]
        self.gone = None
        return box["value"]

    def _problem(self, offset: int) -> str | None:
        """Why the server is unwell, from its process and its log since ``offset``; None when neither says."""
        if self.watch is not None:
            why = self.watch()
            if why:
                return why
        line = self._fatal_line(offset)
        return f"logged a fatal error ({line!r})" if line else None

    def _log_since(self, offset: int) -> str | None:
        """What the server logged since ``offset`` (None without a log, or one that can't be read)."""
        if not self.log_path:
            return None
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return None

    def _fatal_line(self, offset: int) -> str | None:
        text = self._log_since(offset)
        return next((ln.strip() for ln in text.splitlines() if any(m in ln for m in FATAL_MARKS)), None) if text else None

    def _live(self, timeout_s: float = CALL_TIMEOUT_S) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self.client.is_server_live(headers=self.headers, client_timeout=timeout_s))
        except InferenceServerException:
            return False

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size if self.log_path else 0
        except OSError:
            return 0

    def _logged_error(self, offset: int) -> str | None:
        """The last error line about this model that the server logged since ``offset``."""
        text = self._log_since(offset)
        if not text:
            return None
        errors = [ln for ln in text.splitlines() if ln.startswith("E") and self.model in ln]
        if not errors:
            return None
        message = errors[-1].split("] ", 1)[-1].strip().strip('"')
        return message.split("': ", 1)[-1]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll until the model is ready, each poll with a short deadline; watched as a load is."""
        from tritonclient.utils import InferenceServerException

        def ready() -> bool:
            try:
                return bool(self.client.is_model_ready(self.model, headers=self.headers, client_timeout=WATCH_EVERY_S))
            except InferenceServerException:
                return False  # not answering this second: the watch below decides whether it is hung

        deadline = time.monotonic() + timeout_s
        offset = self._log_size()
        silent_since: float | None = None
        while not ready():
            problem = self._problem(offset)
            if problem is None and not self._live(WATCH_EVERY_S):
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since >= HUNG_AFTER_S:
                    problem = f"did not answer for {HUNG_AFTER_S:g} s (hung)"
            else:
                silent_since = None
            if problem is not None:
                self.gone = problem
                raise ServerGone(f"Triton at {self.url} {problem} while {self.model} became ready")
            if time.monotonic() > deadline:
                raise AxonError(f"model {self.model!r} not ready {timeout_s:.0f} s after its load at {self.url}")
            time.sleep(POLL_S)
        self.gone = None  # ready: whatever was wrong before (a restarted server) is over

    # ------------------------------------------------------------------ restore
    def restore(self) -> dict:
        """Unload, then load from the repository: the on-disk config, not the last override.

        Returns what was done, the seconds it took, and whether the served config now equals the
        one served before tuning (it does unless that one was itself an override).
        """
        started = time.monotonic()
        self.watched("unload", lambda: self.client.unload_model(self.model, headers=self.headers, client_timeout=LOAD_TIMEOUT_S))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (
            self.client.is_model_ready(self.model, headers=self.headers, client_timeout=CALL_TIMEOUT_S)
            and time.monotonic() < deadline
        ):
            time.sleep(POLL_S)
        self.watched("load", lambda: self.client.load_model(self.model, headers=self.headers, client_timeout=LOAD_TIMEOUT_S))
        self.wait_ready()
        now = self.served_config()
        return {
            "method": "unload, then load from the repository",
            "seconds": time.monotonic() - started,
            "matches_initial": now == self.initial,
        }


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
