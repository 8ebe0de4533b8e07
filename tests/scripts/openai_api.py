"""Drives NetMoE's HTTP API with the official `openai` client.

Usage: openai_api.py BASE_URL API_KEY PROMPT
Checks a chat completion, a streamed one (text arrives before the last
expert finishes), a multi-turn chat (every expert's prompt carries the
earlier turns), the models list, a bad key (401), bad requests (400),
an oversized prompt and history (413) and overload (429 with Retry-After). Prints one
JSON line of what it measured; exits non-zero on the first failed check.
"""

import json
import sys
import threading
import time

import openai

base, key, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
out = {}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}", file=sys.stderr)


# The models list: the mixture and each expert by name.
models = [m.id for m in client.models.list().data]
out["models"] = models
check("netmoe" in models, f"models list has the mixture: {models}")
experts = [m for m in models if m.startswith("expert:")]
check(len(experts) >= 2, f"models list names the experts: {experts}")

# A plain chat completion.
t = time.monotonic()
r = client.chat.completions.create(
    model="netmoe",
    messages=[{"role": "user", "content": prompt}],
    max_tokens=32,
    seed=7,
    user="openai-test",
)
out["chat_s"] = time.monotonic() - t
text = r.choices[0].message.content
check(r.object == "chat.completion" and len(text.split()) >= 5, f"chat completion text: {text!r}")
ext = r.model_extra["netmoe"]
check(len(ext["segments"]) >= 2 and all(s["target"] for s in ext["segments"]),
      "the netmoe extension names each segment's node")
check(r.usage.completion_tokens > 0, "usage counts tokens")

# Streamed: time every chunk; the first text must come before the last
# segment finished (and so before the final chunk).
t0 = time.monotonic()
first_text = None
last_finished = None
final = None
pieces = []
routed = None
stream = client.chat.completions.create(
    model="netmoe",
    messages=[{"role": "user", "content": prompt}],
    max_tokens=32,
    seed=8,
    stream=True,
)
for chunk in stream:
    now = time.monotonic() - t0
    extra = (chunk.model_extra or {}).get("netmoe") or {}
    if "routed" in extra:
        routed = extra["routed"]
    if "finished" in extra:
        last_finished = now
    delta = chunk.choices[0].delta.content if chunk.choices else None
    if delta:
        pieces.append(delta)
        if first_text is None:
            first_text = now
    if chunk.choices and chunk.choices[0].finish_reason == "stop":
        final = now
        answer = extra["answer"]
out["stream_first_text_s"] = first_text
out["stream_last_segment_s"] = last_finished
out["stream_final_s"] = final
out["stream_chunks"] = len(pieces)
check(routed is not None and len(routed["segments"]) >= 2, "the first chunk carries the routing")
check(first_text is not None and final is not None, "text chunks and a final chunk arrived")
check(first_text < last_finished, f"first text at {first_text:.2f}s, before the last segment finished at {last_finished:.2f}s")
check(first_text < final, "first text before the final chunk")
norm = lambda t: " ".join(t.split())
passages = [s["text"] for s in answer["segments"] if not s["error"]]
check(norm("".join(pieces)) == norm(" ".join(passages)), "the streamed text is the passages in prompt order")
check(answer["story"].strip() != "", "the final chunk carries the fused story")

# A conversation: the earlier user and assistant turns reach every
# expert's prompt (the system message is not forwarded), which the
# extension reports per segment and the prompt token counts show.
earlier = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Write a story about a lighthouse keeper named Ada."},
    {"role": "assistant", "content": "Ada climbed the hundred steps of the lighthouse every night "
                                     "and lit the lamp for the fishing boats out on the grey sea."},
]
single = client.chat.completions.create(
    model="netmoe", messages=[{"role": "user", "content": prompt}], max_tokens=16, seed=11,
    extra_body={"netmoe": {"max_segments": 1}},
)
turns = client.chat.completions.create(
    model="netmoe", messages=earlier + [{"role": "user", "content": prompt}], max_tokens=16, seed=11,
    extra_body={"netmoe": {"max_segments": 1}},
)
s1 = single.model_extra["netmoe"]["segments"][0]
s2 = turns.model_extra["netmoe"]["segments"][0]
out["history_prompt_tokens"] = [s1["prompt_tokens"], s2["prompt_tokens"]]
check(s1["history_turns"] == 0 and s2["history_turns"] == 2 and not s2["error"],
      f"each expert's prompt carries the 2 earlier turns: {s2['history_turns']}")
check(s1["target"] == s2["target"], "the same prompt goes to the same node under the relevance policy")
check(s2["prompt_tokens"] >= s1["prompt_tokens"] + 25,
      f"the turns lengthen the prompt: {s1['prompt_tokens']} -> {s2['prompt_tokens']} tokens")
try:
    client.chat.completions.create(model="netmoe", messages=earlier[1:], max_tokens=8)
    check(False, "a chat that ends with the assistant's turn is refused")
except openai.BadRequestError as e:
    check(e.status_code == 400, "a chat that ends with the assistant's turn gets 400")
try:
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 200} for i in range(20)]
    client.chat.completions.create(model="netmoe", messages=long + [{"role": "user", "content": prompt}], max_tokens=8)
    check(False, "a history over 16 KiB is refused")
except openai.APIStatusError as e:
    check(e.status_code == 413 and e.body.get("code") == "history_too_large",
          f"a history over 16 KiB gets 413: {e.status_code} {e.body}")

# A completion, the older endpoint.
c = client.completions.create(model="netmoe", prompt=prompt, max_tokens=16, seed=9)
check(c.object == "text_completion" and c.choices[0].text.strip(), "text completion")

# Bad key: 401.
try:
    openai.OpenAI(base_url=base, api_key="nmk_bad_key", max_retries=0).models.list()
    check(False, "a bad key is refused")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "a bad key gets 401")

# Bad request: 400.
try:
    client.chat.completions.create(model="netmoe", messages=[{"role": "user", "content": prompt}], max_tokens=0)
    check(False, "max_tokens 0 is refused")
except openai.BadRequestError as e:
    check(e.status_code == 400 and e.body.get("code") == "bad_max_tokens", f"max_tokens 0 gets 400: {e.body}")

# Unknown model: 404.
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    check(False, "an unknown model is refused")
except openai.NotFoundError as e:
    check(e.status_code == 404, "an unknown model gets 404")

# Oversized prompt: 413.
try:
    client.chat.completions.create(model="netmoe", messages=[{"role": "user", "content": "word " * 2000}])
    check(False, "an oversized prompt is refused")
except openai.APIStatusError as e:
    check(e.status_code == 413, f"an oversized prompt gets 413 (got {e.status_code})")

# Overload: with one request in flight (the coordinator runs
# --max-concurrent-asks 1), the next gets 429 with Retry-After.
busy = threading.Thread(
    target=lambda: client.chat.completions.create(
        model="netmoe", messages=[{"role": "user", "content": prompt}], max_tokens=48, seed=10
    )
)
busy.start()
time.sleep(1.0)
try:
    client.chat.completions.create(model="netmoe", messages=[{"role": "user", "content": prompt}], max_tokens=8)
    check(False, "a request over the concurrency limit is refused")
except openai.RateLimitError as e:
    check(e.status_code == 429 and e.response.headers.get("retry-after") == "1", "overload gets 429 with Retry-After: 1")
busy.join()

print(json.dumps(out))
