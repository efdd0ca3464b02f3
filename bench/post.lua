-- wrk script of the benchmark: POST /api/1/eggs-count (the path is in the
-- URL given to wrk). With BENCH_TOKEN set (target (a), COOP directly) it
-- sends the bearer token itself; a proxy target adds its own.
wrk.method = "POST"

local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end
