-- Argo CD health check for scheduling.carbonrouter.io/TrafficSchedule.
--
-- Argo CD runs this script (gopher-lua, Lua 5.1) with the live object in the
-- global `obj` and reads the returned table's `status` and `message`.
-- The sync hook writes `status.observedGeneration` and the conditions
-- `Ready`, `SpecValid` and `EngineReachable`; a condition counts only when the
-- status was written for the object's current generation, because an older
-- status describes a spec that is no longer in git.
-- The argocd-cm key that carries this script is generated from this file:
-- keep argocd/config/argocd-cm-health.yaml equal to it.

local function find_condition(conditions, condition_type)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function degraded_message(condition, fallback)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

local health = {}

if obj.status == nil then
  health.status = "Progressing"
  health.message = "Waiting for the controller to report on this TrafficSchedule"
  return health
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if observed == nil or (generation ~= nil and observed ~= generation) then
  health.status = "Progressing"
  health.message = "Waiting for the controller to observe generation " .. tostring(generation) ..
    " (last observed: " .. tostring(observed) .. ")"
  return health
end

local conditions = obj.status.conditions
local spec_valid = find_condition(conditions, "SpecValid")
if spec_valid ~= nil and spec_valid.status == "False" then
  health.status = "Degraded"
  health.message = degraded_message(spec_valid, "The TrafficSchedule spec is invalid")
  return health
end

local engine_reachable = find_condition(conditions, "EngineReachable")
if engine_reachable ~= nil and engine_reachable.status == "False" then
  health.status = "Degraded"
  health.message = degraded_message(engine_reachable, "The decision engine is unreachable")
  return health
end

local ready = find_condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = ready.message or "Ready"
  return health
end

health.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  health.message = ready.message
else
  health.message = "Waiting for the Ready condition"
end
return health
