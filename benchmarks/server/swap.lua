-- wrk script for the swap benchmark: POST {"seed": N} with a fresh seed per request, and count
-- the answers by status and by X-Model-Version; prints one JSON line at the end.
local counter = 0
local threads = {}
versions = {}
statuses = {}

setup = function(thread)
  thread:set("offset", math.random(0, 1000000000))
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                    string.format('{"seed": %d}', (offset or 0) + counter))
end

response = function(status, headers, body)
  local version = headers["X-Model-Version"] or headers["x-model-version"] or "none"
  versions[version] = (versions[version] or 0) + 1
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
end

local function merged(name)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get(name)) do
      total[key] = (total[key] or 0) + count
    end
  end
  local parts = {}
  for key, count in pairs(total) do
    table.insert(parts, string.format('"%s": %d', key, count))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"versions": %s, "statuses": %s}\n', summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max, merged("versions"), merged("statuses")))
end
