-- wrk script: tallies responses by "status verify-header" per thread and prints the
-- totals as one JSON object at the end, for the soak spec to check.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  tally = {}
end

function response(status, headers, body)
  local verify = headers["x-upstream-verify"] or "-"
  local key = status .. " " .. verify
  tally[key] = (tally[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local part = t:get("tally")
    for k, v in pairs(part) do
      total[k] = (total[k] or 0) + v
    end
  end
  local items = {}
  for k, v in pairs(total) do
    table.insert(items, string.format("%q: %d", k, v))
  end
  io.write("TALLY {" .. table.concat(items, ", ") .. "}\n")
  io.write(string.format("ERRORS %d %d %d %d %d\n", summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
end
