"""Run the TrafficSchedule health check the way Argo CD runs it.

Argo CD evaluates `argocd/health/trafficschedule.lua` with gopher-lua (Lua 5.1),
the live object in the global `obj`, and only the base, table, package and a
reduced os library loaded (no `string` library unless useOpenLibs is set).
`run_health_check` loads the script into lupa's Lua 5.1 runtime inside an
environment that holds only those names, so a script that needs anything
else fails here too.
"""

from __future__ import annotations

from pathlib import Path

from lupa import lua51

REPO = Path(__file__).resolve().parents[2]
HEALTH_SCRIPT = REPO / "argocd" / "health" / "trafficschedule.lua"
ARGOCD_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# Globals of Argo CD's Lua VM without useOpenLibs: the base library, table,
# package and a reduced os. The string library is deliberately absent.
SANDBOX_SETUP = """
local script, live = ...
local env = {
  ipairs = ipairs, pairs = pairs, next = next, select = select, type = type,
  tostring = tostring, tonumber = tonumber, error = error, pcall = pcall,
  assert = assert, unpack = unpack, table = table,
  os = {time = os.time, date = os.date, clock = os.clock},
  obj = live,
}
local chunk, err = loadstring(script, "trafficschedule.lua")
if chunk == nil then error(err) end
setfenv(chunk, env)
return chunk()
"""


def run_health_check(live: dict) -> dict:
    """Evaluate the health script on `live` and return its table as a dict."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua_object = runtime.table_from(live, recursive=True)
    result = runtime.execute(SANDBOX_SETUP, HEALTH_SCRIPT.read_text(), lua_object)
    return {key: result[key] for key in result}
