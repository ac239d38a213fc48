#!/bin/sh
# Entry point of the paidrelay image: the first argument picks the app.
#   relay      apps/relay/src/main.ts      (the relay, PORT, default 7777)
#   admission  apps/admission/src/main.ts  (the admission service, ADMISSION_PORT, default 7778)
#   anything else is run as a command (e.g. `sh`).
# Each app runs from its own package folder so `--import tsx` resolves that package's tsx.
# `exec` makes node PID 1's process, so SIGTERM reaches it and the app drains.
set -eu

app="${1:-relay}"
if [ "$#" -gt 0 ]; then shift; fi

case "$app" in
  relay)
    cd /app/apps/relay
    exec node --import tsx src/main.ts "$@"
    ;;
  admission)
    cd /app/apps/admission
    exec node --import tsx src/main.ts "$@"
    ;;
  *)
    exec "$app" "$@"
    ;;
esac
