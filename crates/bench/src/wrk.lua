-- wrk script of tollgate-bench: spreads requests over many API keys and
-- prints one machine-readable summary line at the end.
local keys = {}
local count = 0

init = function(args)
  for line in io.lines(args[1]) do
    count = count + 1
    keys[count] = line
  end
end

request = function()
  local key = keys[math.random(count)]
  return wrk.format("GET", "/v1/ticker", { ["Authorization"] = "Bearer " .. key })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"socket_errors\":%d,\"non_2xx\":%d,\"p50_us\":%d,\"p99_us\":%d,\"p999_us\":%d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
