#!/bin/sh
# Entry point of the paidrelay image: the first argument picks the app.
#   relay      apps/relay/dist/main.js      (the relay, PORT, default 7777)
#   admission  apps/admission/dist/main.js  (the admission service, ADMISSION_PORT, default 7778)
#   dashboard  apps/dashboard/dist/main.js  (the admin dashboard, DASHBOARD_PORT, default 7779)
#   anything else is run as a command (e.g. `sh`).
# The apps run as JavaScript bundles (`pnpm build`, scripts/build.ts), each from its own package
# folder, as `pnpm start` does there (a relative DATA_DIR or CONFIG_FILE means the same).
# `exec` makes node PID 1's process, so SIGTERM reaches it and the app drains.
set -eu

app="${1:-relay}"
if [ "$#" -gt 0 ]; then shift; fi

case "$app" in
  relay)
    cd /app/apps/relay
    exec node dist/main.js "$@"
    ;;
  admission)
    cd /app/apps/admission
    exec node dist/main.js "$@"
    ;;
  dashboard)
    cd /app/apps/dashboard
    exec node dist/main.js "$@"
    ;;
  *)
    exec "$app" "$@"
    ;;
esac
