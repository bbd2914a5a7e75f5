"""The environment variables the Optuna side and the service read or hand to the processes they start.

(``models`` keeps its one, ``DIGITUNE_TF_GRAPPLER``, and the dashboard ``DIGITUNE_LAUNCH_DIR``:
neither is handed on, and ``models`` imports nothing of ``search``.)

A secret (a database password in the storage URL) travels only here, never on a command line.
"""

STORAGE_ENV = "DIGITUNE_STORAGE"  # the storage URL: --storage's default, and how children get it
ARTIFACTS_ENV = "DIGITUNE_ARTIFACTS"  # the folder for saved models, --artifacts' default
WORKERS_ENV = "DIGITUNE_WORKERS"  # the default --workers, instead of one per core
THREADS_ENV = "DIGITUNE_THREADS"  # a worker's thread budget, set by its launcher
PARENT_ENV = "DIGITUNE_PARENT_PID"  # set for the processes digitune starts: the pid of the process that started it
TOKEN_ENV = "DIGITUNE_DASHBOARD_TOKEN"  # the dashboard's login token
RECONNECT_ENV = "DIGITUNE_RECONNECT_SECONDS"  # how long a worker waits for a database that went away
# Overrides, e.g. for tests that kill a worker and want its trial recovered in seconds.
HEARTBEAT_ENV = "DIGITUNE_HEARTBEAT_INTERVAL"
GRACE_ENV = "DIGITUNE_GRACE_PERIOD"
