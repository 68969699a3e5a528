-- wrk script: POST a JSON body with a random seed (WRK_BODY, "%d" for the seed), or a fixed
-- multipart body read from WRK_BODY_FILE with WRK_CONTENT_TYPE; prints one JSON line at the end.
local template = os.getenv("WRK_BODY") or '{"seed": %d}'
local body_file = os.getenv("WRK_BODY_FILE")
local content_type = os.getenv("WRK_CONTENT_TYPE") or "application/json"
local fixed_body = nil
if body_file then
  local handle = io.open(body_file, "rb")
  fixed_body = handle:read("*all")
  handle:close()
end
local counter = 0

setup = function(thread)
  thread:set("offset", math.random(0, 1000000000))
end

request = function()
  counter = counter + 1
  local body = fixed_body or string.format(template, (offset or 0) + counter)
  return wrk.format("POST", nil, {["Content-Type"] = content_type}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, ' ..
    '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, ' ..
    '"p95_us": %d, "p99_us": %d, "max_us": %d}\n', summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
end
