"""`reelserve serve --replicas N` (N > 1): the front-door deployment in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from reelserve.triton.errors import ServerStartError
from reelserve.triton.signals import stop_signals

from .deployment import FrontDoorDeployment, ReplicaLayout

__all__ = ["serve_front_door"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_addresses(d: FrontDoorDeployment) -> None:
    public = d.layout.public
    tls = " (TLS)" if public.tls_cert else ""
    print(f"front door ready: nginx (pid {d.nginx.pid}) over {len(d.servers)} tritonserver replicas", flush=True)
    print(f"  gRPC:    {d.grpc_url}{tls}", flush=True)
    print(f"  HTTP:    {d.http_url}", flush=True)
    print(f"  metrics: {d.metrics_url} (front door); replicas' Triton metrics:", flush=True)
    for server in d.servers:
        print(f"           {server.metrics_url}  (pid {server.pid}, log {server.log_path})", flush=True)
    print(f"  nginx:   {d.nginx.conf_path}, logs in {d.run_dir}", flush=True)
    if public.api_key is not None:
        print("  access:  every protocol but health/metadata needs the x-api-key header", flush=True)


def serve_front_door(layout: ReplicaLayout) -> int:
    """Start everything, print where it listens, wait for a signal; 1 once no replica can be restarted."""
    deployment = FrontDoorDeployment(layout, log=_say)
    starting = True  # a signal now abandons the start (start() stops what it began)
    with stop_signals(interrupt=lambda: starting) as stop:
        try:
            try:
                deployment.start()
            except KeyboardInterrupt:
                _say("interrupted during startup; everything stopped")
                return 0
            starting = False
            _print_addresses(deployment)
            while not stop.wait(0.5):
                if deployment.all_failed():
                    _say("reelserve serve: every replica is in a crash loop; stopping")
                    return 1
                if not deployment.nginx.is_running():
                    _say(f"reelserve serve: nginx exited; {deployment.nginx.error_log}:\n{deployment.nginx.log_tail()}")
                    return 1
            print("stopping the front door and its replicas ...", flush=True)
            return 0
        except ServerStartError as e:
            _say(f"reelserve serve: {e}")
            return 1
        finally:
            deployment.stop()
