"""python -m gpu_daemon --dsn CONNINFO [--device auto|cpu|cuda:N] [--worker-id ID] [--job-runners N] [--connect-seconds S]"""

import argparse
import logging
import signal
import sys

from .worker import Worker


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpu_daemon", description="run a shift worker")
    parser.add_argument("--dsn", required=True, help="libpq connection string of the shift database")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lease-seconds", type=float, default=60.0,
                        help="how long a claimed task stays this worker's without a heartbeat (default: 60)")
    parser.add_argument("--job-runners", type=int, default=1,
                        help="threads that run jobs submitted with shift.submit (default: 1; 0: none)")
    parser.add_argument("--connect-seconds", type=float, default=120.0,
                        help="how long to keep trying the first connection while the database comes up, with "
                             "the backoff of a reconnect (default: 120; 0: one try)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = Worker(args.dsn, device=args.device, worker_id=args.worker_id, batch_size=args.batch_size,
                    lease_seconds=args.lease_seconds, job_runners=args.job_runners,
                    first_connect_seconds=args.connect_seconds)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    # status 1 when it stopped because something broke, so that a supervisor restarts it
    sys.exit(1 if worker.run() else 0)


if __name__ == "__main__":
    main()
