"""Where tasks run: in this process, on a local Dask cluster, or on an external (TLS) one.

The executor knows nothing of stages or fingerprints: it takes task argument tuples for
:func:`pipeline.task.run_scene_task` and hands each result back. A GPU task takes one unit of
the workers' ``GPU`` resource, so one task per GPU runs at a time.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.task import Result, Task, run_scene_task

GPU = "GPU"  # the Dask worker resource that a GPU stage's task takes one unit of
TLS_KEYS = ("tls_ca_file", "tls_client_cert", "tls_client_key")


def load_security(path: Path) -> Any:
    """A ``distributed.security.Security`` that requires TLS, from a YAML/JSON file naming
    ``tls_ca_file``, ``tls_client_cert`` and ``tls_client_key`` (relative to the file's folder)."""
    from distributed.security import Security

    where = f"--security {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PipelineError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{where}: not valid YAML or JSON ({exc})".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: must be a mapping of {', '.join(TLS_KEYS)}")
    unknown = sorted(set(raw) - set(TLS_KEYS))
    if unknown:
        raise PipelineError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(TLS_KEYS)})")
    unnamed = [key for key in TLS_KEYS if not isinstance(raw.get(key), str)]
    if unnamed:
        raise PipelineError(f"{where}: '{unnamed[0]}' must name a file")
    files = {key: path.parent / Path(raw[key]).expanduser() for key in TLS_KEYS}
    for key, file in files.items():
        if not file.is_file():
            raise PipelineError(f"{where}: {key} {file} does not exist")
    return Security(require_encryption=True, **{k: str(f) for k, f in files.items()})


class Executor:
    """Runs task lists in-process (workers=0) or on a Dask cluster started on first use.

    The local cluster's workers are processes, or threads of this process when ``processes`` is
    False (a ``memory://`` store, which no other process sees). With ``gpu`` one of them holds
    the GPU resource, so GPU tasks run one at a time while the others take CPU tasks; on an
    external cluster, workers started with ``--resources GPU=1`` hold it. ``security`` (TLS) is
    for the external scheduler; without it the client takes Dask's ``distributed.comm.tls`` config.
    """

    def __init__(self, workers: int, scheduler: str | None, processes: bool = True, gpu: bool = False,
                 security: Any = None):
        self.workers, self.scheduler, self.processes, self.gpu = workers, scheduler, processes, gpu
        self.security = security
        self._client: Any = None
        self._cluster: Any = None

    def map(self, tasks: list[tuple], on_done: Callable[[Result], None], gpu: bool = False) -> None:
        """Run ``run_scene_task(*task)`` for each task (a ``Task`` or its plain tuple); call
        ``on_done`` with each result.

        ``gpu``: the tasks may use the GPU; each takes one unit of the GPU resource when some
        worker has it (otherwise they run anywhere and pick their device themselves).
        """
        if self.workers == 0 and self.scheduler is None:
            for task in tasks:
                on_done(run_scene_task(*task))
            return
        from dask.distributed import as_completed

        client = self._start()
        resources = {GPU: 1} if gpu and self.gpu_workers() else None
        futures = [client.submit(run_scene_task, *task, pure=False, key=Task(*task).key, resources=resources)
                   for task in tasks]
        for fut in as_completed(futures):
            on_done(fut.result())

    def run_where_tasks_run(self, fn: Callable[..., Any], *args: Any, gpu: bool = False) -> dict[str, Any]:
        """``fn(*args)`` where ``map``'s tasks would run, by worker address ("" for this machine,
        which the in-process and local-cluster tasks share): on an external cluster every worker,
        or with ``gpu`` the GPU workers when there are any."""
        if self.scheduler is None:
            return {"": fn(*args)}
        return self._start().run(fn, *args, workers=(self.gpu_workers() if gpu else None) or None)

    def connect(self) -> None:
        """Start the cluster or reach the scheduler now (so a refused connection writes nothing)."""
        self._start()

    def gpu_workers(self) -> list[str]:
        """Addresses of the cluster's workers that hold the GPU resource."""
        info = self._start().scheduler_info(n_workers=-1)["workers"]
        return sorted(addr for addr, w in info.items() if (w.get("resources") or {}).get(GPU))

    def _start(self) -> Any:
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, security=self.security)
                except (OSError, TypeError, RuntimeError, ValueError) as exc:  # unreachable, or refused by TLS
                    hint = ("; a tls:// scheduler needs --security FILE or Dask's distributed.comm.tls config"
                            if self.security is None and self.scheduler.startswith("tls://") else "")
                    raise PipelineError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}{hint}") from exc
            else:
                self._cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=self.processes,
                                             dashboard_address=None)
                if self.gpu:  # one worker of the same kind as the others, plus the GPU resource
                    spec = self._cluster.new_spec
                    self._cluster.worker_spec["gpu"] = {
                        **spec, "options": {**spec["options"], "resources": {GPU: 1}}}
                self._cluster.scale(self.workers)
                self._client = Client(self._cluster)
                self._client.wait_for_workers(self.workers)
        return self._client

    def close(self) -> None:
        """Close the client and the local cluster, if started."""
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
