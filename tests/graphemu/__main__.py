"""Run the emulator by hand: ``python -m tests.graphemu --port 8443 --data DIR``."""

from __future__ import annotations

import argparse
import signal
import threading

from . import GraphEmulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.graphemu",
                                description="Local Microsoft Graph / OneDrive emulator")
    p.add_argument("--port", type=int, default=8443,
                   help="login host port; Graph is PORT+1, uploads/downloads PORT+2 "
                        "(0: any free ports)")
    p.add_argument("--data", required=True, help="state directory (kept across runs)")
    p.add_argument("--mode", choices=("personal", "business"), default="personal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lenient", action="store_true",
                   help="250 MB simple-upload limit instead of the strict 4 MiB")
    p.add_argument("--device-code-interval", type=int, default=5)
    args = p.parse_args(argv)
    emu = GraphEmulator(args.data, mode=args.mode, seed=args.seed, port=args.port,
                        strict=not args.lenient,
                        device_code_interval=args.device_code_interval)
    emu.start()
    print(f"graphemu ({args.mode}) running")
    print(f"  authority     {emu.authority}   (msal: instance_discovery=False)")
    print(f"  graph         {emu.graph_url}")
    print(f"  files         {emu.files_url}")
    print(f"  device login  {emu.authority_url}/devicelogin")
    print(f"  CA            {emu.ca_pem}")
    print(f"  CA bundle     {emu.ca_bundle}   (system CAs + ours, for REQUESTS_CA_BUNDLE)")
    print(f"  client_id     {emu.client_id}")
    print(f"  tenant        {emu.tenant}")
    print(f"  user          {emu.default_user}   drive {emu.drive_id}")
    if emu.site_id:
        print(f"  site          {emu.site_id}   drive {emu.site_drive_id}")
    print("Ctrl-C stops it.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    emu.stop()
    if emu.violations:
        print(f"{len(emu.violations)} rule violations by clients:")
        for v in emu.violations:
            print(f"  {v['rule']}: {v['request']} -- {v['detail']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
