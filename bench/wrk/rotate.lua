-- wrk script for the 1,000-certificate variants of `make bench`: every request carries the
-- next Host of uNNNN.<domain> in turn, the gateway's cluster uses it as SNI (auto_sni), and
-- the upstream answers each SNI with its own certificate. In turn, not at random: with a
-- FIFO cache smaller than the rotation every response is a miss (the worst case).
-- args (after `--`): COUNT DOMAIN
local requests = {}
local count = 0
local next_index = 0

init = function(args)
  count = tonumber(args[1]) or 1000
  local domain = args[2] or "bench.internal"
  for i = 0, count - 1 do
    requests[i] = wrk.format("GET", "/", { Host = string.format("u%04d.%s", i, domain) })
  end
  -- Threads start at different places so that they do not walk the rotation in step.
  next_index = math.random(0, count - 1)
end

request = function()
  local r = requests[next_index]
  next_index = (next_index + 1) % count
  return r
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
