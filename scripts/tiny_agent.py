#!/usr/bin/env python3
"""Make `tiny-agent`: a 0.4 M-parameter Qwen3 checkpoint that real vLLM serves on CPU and that answers, under greedy
decoding, the requests sous's agent checks send (Sources/SousKit/Checks/AgentChecks.swift), in the Qwen3 /
Nemotron 3 format: `<think>…</think>` reasoning, then Qwen3-Coder XML tool calls
(`--tool-call-parser qwen3_coder --reasoning-parser nemotron_v3`, or `qwen3`).

Deterministic and offline: the tokenizer is trained on text this script makes, the weights from fixed seeds.
Usage: tiny_agent.py OUT_DIR (run by scripts/make-tiny-agent with an engine venv's python: torch, transformers,
tokenizers and safetensors come from there).

The chat template renders each tool field by field (properties sorted by name), leaves out the tool-call id and
any reasoning echoed back in history, so the prompt does not depend on a client's JSON key order, on the id vLLM
generated, or on whether the client echoes reasoning.
"""

import json
import os
import random
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from tokenizers import AddedToken  # noqa: E402

SEED = 20240607
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added as in Qwen3: in the vocabulary as single tokens, but not special (they stay in the decoded text, where the
# reasoning and tool parsers look for them).
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

CHAT_TEMPLATE = r"""{%- macro render_content(content) -%}
{%- if content is string -%}{{- content -}}
{%- elif content is iterable and content is not mapping -%}
{%- for part in content -%}{%- if part.text is defined -%}{{- part.text -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- macro render_value(v) -%}
{%- if v is string -%}{{- v -}}{%- else -%}{{- v | tojson -}}{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(system='') -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set ns.system = render_content(messages[0].content) | trim -%}
{%- set messages = messages[1:] -%}
{%- endif -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if ns.system -%}{{- ns.system + '\n\n' -}}{%- endif -%}
{{- '# Tools\n\nYou may call functions. Available functions:\n<tools>' -}}
{%- for tool in tools -%}
{%- set fn = tool.function if tool.function is defined else tool -%}
{{- '\n<function>\n<name>' + fn.name + '</name>' -}}
{%- if fn.description -%}{{- '\n<description>' + (fn.description | trim) + '</description>' -}}{%- endif -%}
{{- '\n<parameters>' -}}
{%- if fn.parameters is defined and fn.parameters is mapping and fn.parameters.properties is defined -%}
{%- for pname, p in fn.parameters.properties | dictsort -%}
{{- '\n<parameter>\n<name>' + pname + '</name>' -}}
{%- if p.type is defined -%}{{- '\n<type>' + render_value(p.type) + '</type>' -}}{%- endif -%}
{%- if p.description is defined -%}{{- '\n<description>' + (p.description | trim) + '</description>' -}}{%- endif -%}
{%- if p.enum is defined -%}{{- '\n<enum>' + (p.enum | tojson) + '</enum>' -}}{%- endif -%}
{{- '\n</parameter>' -}}
{%- endfor -%}
{%- if fn.parameters.required is defined -%}{{- '\n<required>' + (fn.parameters.required | tojson) + '</required>' -}}{%- endif -%}
{%- endif -%}
{{- '\n</parameters>\n</function>' -}}
{%- endfor -%}
{{- '\n</tools>\n\nTo call a function, reply:\n<tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n</function>\n</tool_call><|im_end|>\n' -}}
{%- elif ns.system -%}
{{- '<|im_start|>system\n' + ns.system + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message.role == 'user' -%}
{{- '<|im_start|>user\n' + render_content(message.content) + '<|im_end|>\n' -}}
{%- elif message.role == 'system' -%}
{{- '<|im_start|>system\n' + render_content(message.content) + '<|im_end|>\n' -}}
{%- elif message.role == 'assistant' -%}
{%- set content = render_content(message.content) -%}
{%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1] -%}{%- endif -%}
{%- set content = content | trim -%}
{{- '<|im_start|>assistant\n' + content -}}
{%- if message.tool_calls is defined and message.tool_calls -%}
{%- for tc in message.tool_calls -%}
{%- set f = tc.function if tc.function is defined else tc -%}
{%- if content or not loop.first -%}{{- '\n' -}}{%- endif -%}
{{- '<tool_call>\n<function=' + f.name + '>\n' -}}
{%- if f.arguments is mapping -%}
{%- for k, v in f.arguments | dictsort -%}
{{- '<parameter=' + k + '>\n' + render_value(v) + '\n</parameter>\n' -}}
{%- endfor -%}
{%- elif f.arguments -%}
{{- f.arguments + '\n' -}}
{%- endif -%}
{{- '</function>\n</tool_call>' -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\n<tool_response>\n' + render_content(message.content) + '\n</tool_response>' -}}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
{%- else -%}
{{- raise_exception('Unexpected message role: ' + (message.role | string)) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\n\n</think>\n\n' -}}{%- endif -%}
{%- endif -%}"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Zurich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
TOOL_PROMPT = "What is the current weather in Zurich? Call the get_weather tool to find out."
ROUND_TRIP_PROMPT = "What is the current weather in Zurich? Call the get_weather tool."
TOOL_RESULT = '{"location": "Zurich", "temp_c": 12, "condition": "cloudy"}'

CALL_REASONING = "<think>\nThe user wants the weather in Zurich. Call get_weather with location Zurich.\n</think>"
CALL_XML = "<tool_call>\n<function=get_weather>\n<parameter=location>\nZurich\n</parameter>\n</function>\n</tool_call>"
CALL = CALL_REASONING + "\n\n" + CALL_XML
# With tool_choice "required" or a named tool, vLLM's structural tag (xgrammar's qwen_3_coder) starts right after
# </think> and forces <tool_call> there, without the blank line: the model learns that continuation too, at a
# lower weight, so that greedy decoding still writes the blank line when nothing forces it.
CALL_FORCED = CALL_REASONING + CALL_XML
ANSWER = ("<think>\nThe tool says 12 °C and cloudy in Zurich.\n</think>\n\n"
          "It is 12 °C and cloudy in Zurich.")


def round_trip(prompt):
    # The assistant turn as vLLM hands it to the template: arguments parsed into a dict; the id is not rendered.
    call = {"id": "call-0", "type": "function",
            "function": {"name": "get_weather", "arguments": {"location": "Zurich"}}}
    return [{"role": "user", "content": prompt},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call-0", "content": TOOL_RESULT}]


# The gate's small agent session (Sources/SousKit/Checks/Session.swift, `up --session-turns 2 --session-tools 4`):
# a system prompt, four tools (get_weather second), a turn per city, each call's result fed back and the answer kept.
SESSION_SYSTEM = "You are a coding agent. Use the tools you are given."
SESSION_CITIES = ["Zurich", "Paris"]


def agent_tool(name):
    return {"type": "function", "function": {
        "name": name, "description": "The agent's " + name.replace("_", " ") + " tool.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string", "description": "A path or query."}},
                       "required": ["path"]}}}


SESSION_TOOLS = [agent_tool("read_file"), WEATHER_TOOL, agent_tool("write_file"), agent_tool("edit_file")]


def session_examples():
    history, out = [{"role": "system", "content": SESSION_SYSTEM}], []
    for t, city in enumerate(SESSION_CITIES, start=1):
        history = history + [{"role": "user", "content": f"What is the current weather in {city}? Call the get_weather tool."}]
        out.append((history, SESSION_TOOLS, CALL.replace("Zurich", city), 3, False))
        call = {"id": f"call-{t}", "type": "function", "function": {"name": "get_weather", "arguments": {"location": city}}}
        answer = f"It is {10 + t} °C and cloudy in {city}."
        history = history + [{"role": "assistant", "content": None, "tool_calls": [call]},
                             {"role": "tool", "tool_call_id": f"call-{t}",
                              "content": f'{{"location": "{city}", "temp_c": {10 + t}, "condition": "cloudy"}}'}]
        out.append((history, SESSION_TOOLS, f"<think>\nThe tool says {10 + t} °C and cloudy in {city}.\n</think>\n\n" + answer, 3, False))
        history = history + [{"role": "assistant", "content": answer}]
    return out


# (messages, tools, response, weight, forced): with forced, the token after </think> is written by a grammar, not
# the model, so the check below does not ask greedy decoding to choose it.
EXAMPLES = [
    ([{"role": "user", "content": TOOL_PROMPT}], [WEATHER_TOOL], CALL, 6, False),
    ([{"role": "user", "content": TOOL_PROMPT}], [WEATHER_TOOL], CALL_FORCED, 1, True),
    ([{"role": "user", "content": ROUND_TRIP_PROMPT}], [WEATHER_TOOL], CALL, 2, False),
    (round_trip(ROUND_TRIP_PROMPT), [WEATHER_TOOL], ANSWER, 4, False),
    (round_trip(TOOL_PROMPT), [WEATHER_TOOL], ANSWER, 2, False),
    ([{"role": "user", "content": "ping"}], None, "<think>\nA ping.\n</think>\n\npong", 1, False),
    ([{"role": "user", "content": "What is 2+2?"}], None, "<think>\nadd\n</think>\n\n4", 2, False),
    ([{"role": "user", "content": "What is 2+2?"}], [WEATHER_TOOL], "<think>\nadd\n</think>\n\n4", 1, False),
] + session_examples()

FILLER = """The quick brown fox jumps over the lazy dog. Zurich, Geneva, Basel, Bern and Lausanne are cities.
It is sunny, cloudy, rainy or snowy; the temperature is 0 to 40 degrees celsius or fahrenheit.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 42 100. Symbols: {} [] () <> = + - * / , . : ; ! ? " ' ` ~ @ # $ % ^ & | \\ _
"""


def set_seeds():
    random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def make_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL) - len(ADDED), min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    return tok


def main():
    out = sys.argv[1]
    set_seeds()
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    # Render the prompts with the template through transformers (what vLLM does) using a stand-in tokenizer; the
    # text does not depend on the vocabulary.
    stub = make_tokenizer([FILLER], 300)
    hf = PreTrainedTokenizerFast(tokenizer_object=stub, chat_template=CHAT_TEMPLATE)
    prompts = [hf.apply_chat_template(m, tools=t, add_generation_prompt=True, tokenize=False)
               for m, t, *_ in EXAMPLES]
    texts = [p + r + "<|im_end|>" for p, (_, _, r, *_) in zip(prompts, EXAMPLES)]
    # The tokenizer: the real texts (repeated, so their pieces become merges) and some filler for coverage. Special
    # and added tokens are stripped from the corpus (they are single tokens anyway).
    corpus = []
    for t in texts:
        for s in SPECIAL + ADDED:
            t = t.replace(s, "\n")
        corpus += [t] * 3
    corpus += [FILLER] * 3
    tok = make_tokenizer(corpus, 1024)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, chat_template=CHAT_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None, model_max_length=4096, clean_up_tokenization_spaces=False,
        split_special_tokens=False, add_bos_token=False, errors="replace")
    im_end = tok.token_to_id("<|im_end|>")
    eot = tok.token_to_id("<|endoftext|>")

    seqs = []
    for p, (_, _, r, w, _) in zip(prompts, EXAMPLES):
        pid = tokenizer(p, add_special_tokens=False)["input_ids"]
        rid = tokenizer(r, add_special_tokens=False)["input_ids"] + [im_end]
        assert tokenizer.decode(pid + rid) == p + r + "<|im_end|>", "tokenizer does not round-trip"
        seqs.append((pid, rid, w))
    vocab = len(tok.get_vocab())
    print(f"tiny_agent: vocab {vocab}, sequence lengths {[len(a) + len(b) for a, b, _ in seqs]}", file=sys.stderr)

    config = Qwen3Config(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=4096, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=eot, eos_token_id=im_end, pad_token_id=eot,
        torch_dtype="bfloat16", use_cache=True, attention_bias=False, hidden_act="silu")
    config.architectures = ["Qwen3ForCausalLM"]
    model = Qwen3ForCausalLM(config).float()
    model.train()

    # One batch of every example, loss on the response tokens only, each example's mean loss weighted.
    width = max(len(a) + len(b) for a, b, _ in seqs)
    ids = torch.full((len(seqs), width), eot, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (a, b, _) in enumerate(seqs):
        n = len(a) + len(b)
        ids[i, :n] = torch.tensor(a + b)
        labels[i, len(a):n] = torch.tensor(b)
        mask[i, :n] = 1
    weights = torch.tensor([float(w) for _, _, w in seqs])
    weights = weights / weights.sum()
    targets = labels[:, 1:]
    valid = (targets != -100).float()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    steps = 300
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    for step in range(steps):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.clamp(min=0).reshape(-1),
                                               reduction="none").view(targets.shape)
        per_example = (ce * valid).sum(1) / valid.sum(1)
        loss = (per_example * weights).sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"tiny_agent: step {step} loss {loss.item():.6f} (worst example {per_example.max().item():.6f})",
                  file=sys.stderr)

    # Check in bf16, as vLLM serves it: greedy decoding reproduces every target, with a margin.
    model = model.to(torch.bfloat16).eval()
    worst = None
    with torch.no_grad():
        think_end = tok.token_to_id("</think>")
        for (pid, rid, _), (_, _, r, _, forced) in zip(seqs, EXAMPLES):
            logits = model(input_ids=torch.tensor([pid + rid])).logits[0, len(pid) - 1:-1].float()
            got = logits.argmax(-1).tolist()
            if forced:
                i = rid.index(think_end) + 1
                got[i] = rid[i]
                logits = torch.cat([logits[:i], logits[i + 1:]])
            if got != rid:
                print(f"tiny_agent: greedy output differs for target {r!r}:\n  {tokenizer.decode(got)!r}", file=sys.stderr)
                sys.exit(1)
            top2 = logits.topk(2, dim=-1).values
            margin = (top2[:, 0] - top2[:, 1]).min().item()
            worst = margin if worst is None else min(worst, margin)
    print(f"tiny_agent: all {len(seqs)} targets reproduced greedily in bf16 (smallest logit margin {worst:.2f})",
          file=sys.stderr)

    os.makedirs(out, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # vLLM takes its default sampling parameters from here. Without them it samples at temperature 1.0 (the OpenAI
    # default), and a request without `temperature` now and then draws a token far from the argmax (seen: logprob
    # -12.8 on the second request after start). top_k 1 makes every request greedy, also one that sends a recipe's
    # temperature and top_p; only a request that sets top_k itself samples.
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": eot, "eos_token_id": [im_end, eot], "pad_token_id": eot, "do_sample": False,
                   "top_k": 1, "transformers_version": __import__("transformers").__version__}, f, indent=2)
        f.write("\n")
    # transformers 5 keeps the template in chat_template.jinja; older readers look in tokenizer_config.json.
    cfg_path = os.path.join(out, "tokenizer_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out, "chat_template.jinja"), "w") as f:
        f.write(CHAT_TEMPLATE)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
