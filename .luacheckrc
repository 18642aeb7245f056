-- luacheck over the store's Lua scripts as Redis runs them (generated header
-- and includes expanded): `uv run python tools/luacheck.py`
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct", "unpack"}
max_line_length = 120
