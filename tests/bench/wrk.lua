-- wrk script for tests/bench/run.sh (section api).
--
-- WRK_MODE=get (default): the URL as given, with the Authorization header
-- (sent to nginx too, so that both servers get the same request bytes).
-- WRK_MODE=post: POST /v1/plans bodies with a unique plan name per
-- request (WRK_TAG-THREAD-N), so that every request creates one plan.
-- WRK_MODE=usage: GET WRK_PATH followed by a member id drawn at random
-- from 1 to WRK_TENANTS, a new one each request.
-- WRK_TOKEN: the bearer token.
--
-- done() prints one line for run.sh:
--   WRK requests=N duration_us=N p50_us=N p99_us=N errors=N status=N
--       timeouts=N
-- (errors: connect+read+write; status: answers other than 2xx/3xx).

local mode = os.getenv("WRK_MODE") or "get"
local token = os.getenv("WRK_TOKEN") or ""
local tag = os.getenv("WRK_TAG") or "bench"
local threads = {}
local n = 0

function setup(thread)
	thread:set("tid", #threads + 1)
	table.insert(threads, thread)
end

function init(args)
	math.randomseed(os.time() * 1000 + (tid or 0))
	wrk.headers["Authorization"] = "Bearer " .. token
	if mode == "post" then
		wrk.method = "POST"
		wrk.headers["Content-Type"] = "application/json"
	end
end

if mode == "usage" then
	local path = os.getenv("WRK_PATH") or "/"
	local tenants = tonumber(os.getenv("WRK_TENANTS") or "1")
	function request()
		return wrk.format(nil, path .. math.random(1, tenants))
	end
end

if mode == "post" then
	function request()
		n = n + 1
		return wrk.format(nil, nil, nil, string.format(
		    '{"name":"%s-%d-%d","vcpus":1,"memory_mib":512,' ..
		    '"disk_bytes":2147483648}', tag, tid, n))
	end
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("WRK requests=%d duration_us=%d p50_us=%d " ..
	    "p99_us=%d errors=%d status=%d timeouts=%d\n", summary.requests,
	    summary.duration, latency:percentile(50), latency:percentile(99),
	    e.connect + e.read + e.write, e.status, e.timeout))
end
