# The TAP-like reporting the shell test suites share (sourced): one line
# per check, "ok - NAME" or "not ok - NAME: WHY", and a closing
# "N passed, M failed" that tests/run_all.sh adds up.
passed=0 failed=0
ok()     { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1${2:+: $2}"; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
die()    { not_ok "$1" "${2:-}"; finish; }
# expect NAME GOT WANT
expect() { if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi; }
# expect_match NAME TEXT REGEX
expect_match() { if grep -qE -- "$3" <<<"$2"; then ok "$1"; else not_ok "$1" "'$(head -c 300 <<<"$2")' does not match /$3/"; fi; }
