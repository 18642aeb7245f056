-- The engine accepted dispatches: keep each run's id with its claim (when
-- its claim is still open), so the reconciler can ask the engine about it.
-- One call for many dispatches; a worker usually hands these ids to its next
-- BEGIN or FINISH instead (see mageflow/_run_ids.py), and calls this only
-- for ids no such call took in time.
-- KEYS: sig_keys...
-- ARGV: dispatch_and_run_ids...
-- REPLIES: ok
-- @include lib/prelude
return {R.ok, record_sent(KEYS_REST, ARGV_REST)}
