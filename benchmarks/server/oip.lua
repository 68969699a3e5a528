-- wrk script for the Open Inference Protocol comparison: the same infer request to any server
-- (WRK_ROWS seeds per request, fresh ones every time: SEED INT64 [rows, 1], IMAGE asked for as
-- binary); prints one JSON line at the end, as wrk.lua does.
local rows = tonumber(os.getenv("WRK_ROWS") or "1")
local counter = 0

setup = function(thread)
  thread:set("offset", math.random(0, 1000000000))
end

request = function()
  counter = counter + 1
  local first = ((offset or 0) + counter) * rows
  local seeds = {}
  for i = 0, rows - 1 do
    seeds[#seeds + 1] = tostring(first + i)
  end
  local body = string.format('{"inputs":[{"name":"SEED","shape":[%d,1],"datatype":"INT64","data":[%s]}],' ..
    '"outputs":[{"name":"IMAGE","parameters":{"binary_data":true}}]}', rows, table.concat(seeds, ","))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, ' ..
    '"p95_us": %d, "p99_us": %d, "max_us": %d}\n', summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
end
