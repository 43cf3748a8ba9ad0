-- wrk script of tollgate-bench: spreads requests over many API keys and
-- prints one machine-readable summary line at the end.
-- Arguments: the keys file, and the path to request (default /v1/ticker).
local keys = {}
local count = 0
local path = "/v1/ticker"

init = function(args)
  for line in io.lines(args[1]) do
    count = count + 1
    keys[count] = line
  end
  if args[2] then
    path = args[2]
  end
end

request = function()
  local key = keys[math.random(count)]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"socket_errors\":%d,\"non_2xx\":%d,\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
