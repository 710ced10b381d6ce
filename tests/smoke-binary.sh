#!/usr/bin/env bash
# Smoke test of the compiled binary, moved away from the source tree: init, user add, serve,
# ready, status, a message in over SMTP and out over POP3, an mbox imported by the running
# server, clean stop on SIGTERM.
set -euo pipefail
BIN=$(realpath "${1:-dist/posthorn}")
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp "$BIN" "$WORK/posthorn"
cd "$WORK"
OFFSET=$((30000 + RANDOM % 20000))
./posthorn version
./posthorn init data --domain smoke.test --port-offset "$OFFSET"
./posthorn check --metabase data/metabase.json
printf 'correct horse battery staple\n' | ./posthorn user add alice@smoke.test --password-stdin --metabase data/metabase.json
./posthorn user list --metabase data/metabase.json | grep -q alice@smoke.test
./posthorn serve --metabase data/metabase.json >serve.log 2>serve.err &
PID=$!
for _ in $(seq 1 100); do grep -q '^ready' serve.log && break; sleep 0.1; done
grep -q '^ready' serve.log || { echo "no ready line"; cat serve.log serve.err; exit 1; }
cat serve.log
./posthorn status --metabase data/metabase.json
python3 - "$OFFSET" <<'PY'
import poplib, smtplib, ssl, sys
off = int(sys.argv[1])
body = "Subject: smoke\r\n\r\nhello from the smoke test\r\n"
with smtplib.SMTP("127.0.0.1", 25 + off, timeout=20) as s:
    s.sendmail("bob@example.net", ["alice@smoke.test"], body)
p = poplib.POP3("127.0.0.1", 110 + off, timeout=20)
p.user("alice@smoke.test"); p.pass_("correct horse battery staple")
count, _ = p.stat()
assert count == 1, count
lines = b"\r\n".join(p.retr(1)[1])
assert b"hello from the smoke test" in lines, lines
p.quit()
print("smoke: SMTP in, POP3 out: ok")
PY
printf 'From a@old.test Thu Jan  1 00:00:00 2024\nSubject: old\n\nfrom the archive\n' >old.mbox
./posthorn import mbox old.mbox --user alice@smoke.test --metabase data/metabase.json | tee import.out
grep -q '^imported 1 message(s).*by the running server' import.out
./posthorn user list --metabase data/metabase.json | grep alice@smoke.test | grep -q ' 2 message'
kill -TERM $PID
wait $PID
grep -q '^stopped' serve.log || { echo "no clean stop"; cat serve.log serve.err; exit 1; }
echo "smoke test passed"
