-- wrk script for bench/run-proxy.sh: POST /v1/chat/completions, streamed when the environment
-- has BENCH_STREAM=1; done() prints one machine-readable line:
--   RESULT requests duration_us rps p50_us p99_us mean_us errors non2xx p90_us
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
local stream = os.getenv("BENCH_STREAM") == "1"
wrk.body = '{"model":"gpt-4o","messages":[{"role":"user","content":' ..
    '"Write a Mastra agent in TypeScript that answers questions about orders"}]' ..
    (stream and ',"stream":true' or '') .. '}'

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %d %d %.1f %d %d %.1f %d %d %d\n", summary.requests,
        summary.duration, summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), latency.mean,
        e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(90)))
end
