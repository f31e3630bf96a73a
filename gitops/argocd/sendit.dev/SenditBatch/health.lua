-- Argo CD health for sendit.dev/SenditBatch, read from the conditions the operator writes
-- (Ready, Reconciling, Stalled as kstatus reads them) and the phase.
--   Healthy     Ready=True: Sent, or DoneProcessing waiting for a manual send
--   Degraded    Stalled=True: Failed, Cancelled, or a missing Secret/ConfigMap/PVC
--   Suspended   spec.suspend while not finished
--   Progressing everything else, including a status older than the spec
-- The message is the batch's own status message: counts and phases, never a patient value.
local hs = {status = "Progressing", message = "Waiting for the operator"}
if obj.status == nil then
  return hs
end
local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end
local conditions = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    conditions[condition.type] = condition
  end
end
local function is_true(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
local function describe(kind)
  local condition = conditions[kind]
  local text = status.phase or ""
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  elseif status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  return text
end
if is_true("Stalled") or status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe("Stalled")
  return hs
end
if is_true("Ready") then
  hs.status = "Healthy"
  hs.message = describe("Ready")
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = describe("Reconciling")
  return hs
end
hs.message = describe("Reconciling")
return hs
