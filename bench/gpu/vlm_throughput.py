"""Chunks per second of the Gemma 3 4B captioner on one GPU, against the physical bound.

Builds Gemma 3 4B IT's architecture from its config with random weights (no
download), feeds it synthetic 896-px frames and the real prompt shape through
the apps' own batching code (`modal/vlm_core.py`: `ChunkBatcher`, the padded
batch, `split_generated`), and prints one table: chunks/s and per-chunk p50/p99
latency for each batch size × frames per chunk, the GPU time split into vision
tower, prefill and decode, and next to each row the bound computed from the
config (FLOPs of the vision tower and the prefill, bytes read per decode step)
and this machine's measured matmul rate and memory bandwidth.

    python3 bench/gpu/vlm_throughput.py                      # on a GPU: the table of the issue
    python3 bench/gpu/vlm_throughput.py --config tiny --device cpu --batch-sizes 1,2 --frames 1,2
    python3 bench/gpu/vlm_throughput.py --estimate --tflops 181 --gbps 864   # bounds only, for a GPU not at hand

Random weights answer garbage, so every row generates exactly `--new-tokens`
tokens (a one-sentence caption is about 20). There is no tokenizer either: the
prompt's text is counted at 4 characters a token and filled with ordinary token
ids; the image tokens are exact (256 a frame, as the processor makes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "modal"))
from vlm_core import ChunkBatcher, Prepared, build_prompt, split_generated  # noqa: E402

# google/gemma-3-4b-it's config.json, the parts that set the cost.
GEMMA3_4B = {
    "text_config": {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 34,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 262208,
        "sliding_window": 1024,
        "query_pre_attn_scalar": 256,
    },
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
    },
    "mm_tokens_per_image": 256,
}
# The same architecture, small enough for a CPU test.
TINY = {
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "vocab_size": 262208,
        "sliding_window": 64,
        "query_pre_attn_scalar": 32,
    },
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 56,
        "patch_size": 14,
    },
    "mm_tokens_per_image": 4,
}
CONFIGS = {"gemma3-4b": GEMMA3_4B, "tiny": TINY}

# Gemma 3's special tokens (the real ids; their values do not change the cost).
BOS, PAD, EOS = 2, 0, 1
START_OF_TURN, END_OF_TURN, NEWLINE, DOUBLE_NEWLINE, USER, MODEL = 105, 106, 107, 108, 2364, 4368
BASE_PROMPT = "Describe what the wearer is looking at in one short present-tense sentence."
HISTORY = [f"The wearer looks at a kitchen counter with a kettle and two cups, view {i}." for i in range(6)]


# ---------------------------------------------------------------- the bound, from the config


@dataclass
class Shape:
    """What one chunk costs, from the config: FLOPs and bytes."""

    vision_flops_per_image: float
    lm_matmul_params: float
    embedding_params: float
    text: dict
    image_tokens: int


def shape_of(config: dict) -> Shape:
    t, v = config["text_config"], config["vision_config"]
    d_v, ff_v, layers_v = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    patches = (v["image_size"] // v["patch_size"]) ** 2
    # Per encoder layer: q, k, v, o (4·d²) and the MLP (2·d·ff) as matmuls, 2 FLOPs a multiply-add;
    # attention over all patches both ways: QKᵀ and AV, 2·n²·d each.
    vision_params = layers_v * (4 * d_v * d_v + 2 * d_v * ff_v)
    patch_embed = 3 * v["patch_size"] ** 2 * d_v
    vision = 2 * (vision_params + patch_embed) * patches + layers_v * 4 * patches * patches * d_v
    vision += 2 * d_v * t["hidden_size"] * config["mm_tokens_per_image"]  # projector
    d, ff, heads, kv, hd = t["hidden_size"], t["intermediate_size"], t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    lm = t["num_hidden_layers"] * (2 * d * heads * hd + 2 * d * kv * hd + 3 * d * ff)
    return Shape(vision, lm, t["vocab_size"] * d, t, config["mm_tokens_per_image"])


def attention_flops(shape: Shape, query_tokens: int, context: int) -> float:
    """QKᵀ and AV of `query_tokens` over a causal context ending at `context`: 5 of 6 layers see a sliding window."""
    t = shape.text
    layers = t["num_hidden_layers"]
    global_layers = max(1, layers // 6)
    local_layers = layers - global_layers
    width = t["num_attention_heads"] * t["head_dim"]
    # Average context a query sees: half the causal span in prefill, the whole cache when decoding.
    span = context / 2 if query_tokens > 1 else context
    local_span = min(span, t["sliding_window"])
    return 4 * width * query_tokens * (global_layers * span + local_layers * local_span)


def kv_bytes(shape: Shape, context: int, bytes_per_value: int) -> float:
    t = shape.text
    layers = t["num_hidden_layers"]
    global_layers = max(1, layers // 6)
    per_token = 2 * t["num_key_value_heads"] * t["head_dim"] * bytes_per_value
    return per_token * (global_layers * context + (layers - global_layers) * min(context, t["sliding_window"]))


@dataclass
class Bound:
    vision_s: float
    prefill_s: float
    decode_s: float

    @property
    def total_s(self) -> float:
        return self.vision_s + self.prefill_s + self.decode_s


def bound_for(shape: Shape, batch: int, frames: int, prompt_tokens: int, new_tokens: int, flops_per_s: float, bytes_per_s: float, bytes_per_value: int) -> Bound:
    """The least time one batch can take on this machine: compute-bound encoder and prefill, then per decode step the larger of compute and memory."""
    vision = batch * frames * shape.vision_flops_per_image / flops_per_s
    prefill = batch * (2 * shape.lm_matmul_params * prompt_tokens + attention_flops(shape, prompt_tokens, prompt_tokens)) / flops_per_s
    prefill += batch * 2 * shape.embedding_params / flops_per_s  # the last position's logits
    decode = 0.0
    weights = (shape.lm_matmul_params + shape.embedding_params) * bytes_per_value
    for step in range(new_tokens - 1):  # the first token comes out of the prefill
        context = prompt_tokens + step + 1
        step_flops = batch * (2 * (shape.lm_matmul_params + shape.embedding_params) + attention_flops(shape, 1, context))
        step_bytes = weights + batch * kv_bytes(shape, context, bytes_per_value)
        decode += max(step_flops / flops_per_s, step_bytes / bytes_per_s)
    return Bound(vision, prefill, decode)


def prompt_tokens_for(shape: Shape, frames: int, prompt: str) -> int:
    return len(token_ids(shape, frames, prompt, image_token=0, boi=0, eoi=0))


def token_ids(shape: Shape, frames: int, prompt: str, *, image_token: int, boi: int, eoi: int) -> list[int]:
    """Gemma 3's chat layout for one request: the turn, each image as BOI + 256 image tokens + EOI, the text, the model's turn."""
    ids = [BOS, START_OF_TURN, USER, NEWLINE]
    for _ in range(frames):
        ids += [DOUBLE_NEWLINE, boi] + [image_token] * shape.image_tokens + [eoi, DOUBLE_NEWLINE]
    text_tokens = max(1, round(len(prompt) / 4))
    ids += [1000 + (i * 7919) % 200_000 for i in range(text_tokens)]
    ids += [END_OF_TURN, NEWLINE, START_OF_TURN, MODEL, NEWLINE]
    return ids


# ---------------------------------------------------------------- the machine's limits


def measure_machine(torch: Any, device: str, dtype: Any) -> tuple[float, float]:
    """(matmul FLOP/s, memory bytes/s) of this device, each the best of a few runs."""
    n = 8192 if device == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    size = (1 << 30) if device == "cuda" else (64 << 20)
    x = torch.empty(size // torch.finfo(dtype).bits * 8, device=device, dtype=dtype)
    y = torch.empty_like(x)

    def best(fn: Any, reps: int) -> float:
        fn()
        sync(torch, device)
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            fn()
            sync(torch, device)
            times.append(time.perf_counter() - started)
        return min(times)

    matmul_s = best(lambda: torch.matmul(a, b), 10)
    copy_s = best(lambda: y.copy_(x), 10)
    return 2 * n**3 / matmul_s, 2 * x.numel() * x.element_size() / copy_s


def sync(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- the measured path


class StageTimer:
    """Time in the vision tower and in the language model's first (prefill) pass, per batch; decode is the rest."""

    def __init__(self, torch: Any, model: Any, device: str) -> None:
        self.torch, self.device = torch, device
        self.reset()
        inner = model.model
        inner.vision_tower.register_forward_pre_hook(lambda *_: self._start("vision"))
        inner.vision_tower.register_forward_hook(lambda *_: self._stop("vision"))
        inner.language_model.register_forward_pre_hook(lambda *_: self._start("lm"))
        inner.language_model.register_forward_hook(lambda *_: self._stop("lm"))

    def reset(self) -> None:
        self.vision = 0.0
        self.prefill = 0.0
        self.lm_calls = 0
        self._began: dict[str, float] = {}

    def _start(self, stage: str) -> None:
        sync(self.torch, self.device)
        self._began[stage] = time.perf_counter()

    def _stop(self, stage: str) -> None:
        sync(self.torch, self.device)
        elapsed = time.perf_counter() - self._began.pop(stage)
        if stage == "vision":
            self.vision += elapsed
        else:
            if self.lm_calls == 0:
                self.prefill += elapsed
            self.lm_calls += 1


@dataclass
class Row:
    batch: int
    frames: int
    prompt_tokens: int
    chunks_per_s: float
    p50_ms: float
    p99_ms: float
    vision_ms: float
    prefill_ms: float
    decode_ms: float
    bound_chunks_per_s: float
    bound_vision_ms: float
    bound_prefill_ms: float
    bound_decode_ms: float

    @property
    def of_bound(self) -> float:
        return self.chunks_per_s / self.bound_chunks_per_s


def build_model(torch: Any, config: dict, device: str, dtype: Any) -> tuple[Any, Any, Any]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    try:
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers name it without the suffix
        from transformers import Gemma3ImageProcessor as ImageProcessor

    hf_config = Gemma3Config(**config)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(hf_config).eval()
    finally:
        torch.set_default_dtype(previous)
    size = config["vision_config"]["image_size"]
    processor = ImageProcessor(size={"height": size, "width": size})
    return model, processor, hf_config


def synthetic_frames(count: int, edge: int) -> list[Any]:
    """Camera-sized frames (the apps resize to 896 px at most before the processor)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (edge, edge, 3), dtype=np.uint8)) for _ in range(count)]


def measure_row(torch: Any, model: Any, processor: Any, hf_config: Any, shape: Shape, args: argparse.Namespace, batch: int, frames: int, rates: tuple[float, float], timer: StageTimer) -> Row:
    dtype = model.dtype
    prompt = build_prompt(BASE_PROMPT, HISTORY, 12.0, 13.0, frames)
    images = synthetic_frames(frames, hf_config.vision_config.image_size)
    stages: list[tuple[float, float, float]] = []

    def generate_batch(items: list[Prepared]) -> list[tuple[str, int]]:
        # The app's path with the tokenizer left out: left-padded rows, one generate, split per row.
        rows = [token_ids(shape, len(it.images), it.prompt, image_token=hf_config.image_token_id, boi=hf_config.boi_token_id, eoi=hf_config.eoi_token_id) for it in items]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows], device=args.device)
        attention_mask = (torch.arange(width, device=args.device)[None, :] >= torch.tensor([width - len(r) for r in rows], device=args.device)[:, None]).long()
        pixel_values = processor([img for it in items for img in it.images], return_tensors="pt")["pixel_values"].to(args.device, dtype=dtype)
        token_type_ids = (input_ids == hf_config.image_token_id).long()
        timer.reset()
        sync(torch, args.device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                token_type_ids=token_type_ids,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=PAD,
                eos_token_id=EOS,
            )
        sync(torch, args.device)
        total = time.perf_counter() - started
        stages.append((timer.vision, timer.prefill, total - timer.vision - timer.prefill))
        return [(" ".join(map(str, ids)), n) for ids, n in split_generated(output, width, set())]

    async def one_round(batcher: ChunkBatcher) -> tuple[float, list[float]]:
        started = time.perf_counter()

        async def timed(item: Prepared) -> float:
            began = time.perf_counter()
            text, tokens = await batcher.submit(item)
            assert tokens == args.new_tokens, f"expected {args.new_tokens} tokens, got {tokens}"
            return time.perf_counter() - began

        latencies = await asyncio.gather(*(timed(Prepared(list(images), prompt)) for _ in range(batch)))
        return time.perf_counter() - started, list(latencies)

    async def run_rounds() -> tuple[list[float], list[float]]:
        batcher = ChunkBatcher(generate_batch, max_batch_size=batch, wait_ms=5)
        await one_round(batcher)  # warm-up
        stages.clear()
        walls, latencies = [], []
        for _ in range(args.rounds):
            wall, lat = await one_round(batcher)
            walls.append(wall)
            latencies += lat
        assert batcher.stats.sizes[1:] == [batch] * args.rounds, batcher.stats.sizes
        return walls, latencies

    walls, latencies = asyncio.run(run_rounds())
    latencies.sort()
    prompt_tokens = prompt_tokens_for(shape, frames, prompt)
    bytes_per_value = torch.finfo(dtype).bits // 8
    bound = bound_for(shape, batch, frames, prompt_tokens, args.new_tokens, rates[0], rates[1], bytes_per_value)
    median = statistics.median
    return Row(
        batch=batch,
        frames=frames,
        prompt_tokens=prompt_tokens,
        chunks_per_s=batch / median(walls),
        p50_ms=1000 * median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        vision_ms=1000 * median(s[0] for s in stages),
        prefill_ms=1000 * median(s[1] for s in stages),
        decode_ms=1000 * median(s[2] for s in stages),
        bound_chunks_per_s=batch / bound.total_s,
        bound_vision_ms=1000 * bound.vision_s,
        bound_prefill_ms=1000 * bound.prefill_s,
        bound_decode_ms=1000 * bound.decode_s,
    )


# ---------------------------------------------------------------- output


def table(rows: list[Row], measured: bool) -> str:
    if measured:
        head = "| batch | frames | prompt tokens | chunks/s | p50 ms | p99 ms | vision ms | prefill ms | decode ms | bound chunks/s | bound vision / prefill / decode ms | of bound |"
        rule = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
        lines = [
            f"| {r.batch} | {r.frames} | {r.prompt_tokens} | {r.chunks_per_s:.2f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.vision_ms:.0f} | {r.prefill_ms:.0f} | "
            f"{r.decode_ms:.0f} | {r.bound_chunks_per_s:.2f} | {r.bound_vision_ms:.0f} / {r.bound_prefill_ms:.0f} / {r.bound_decode_ms:.0f} | {r.of_bound:.2f} |"
            for r in rows
        ]
    else:
        head = "| batch | frames | prompt tokens | bound chunks/s (estimate) | bound vision / prefill / decode ms |"
        rule = "|---:|---:|---:|---:|---|"
        lines = [
            f"| {r.batch} | {r.frames} | {r.prompt_tokens} | {r.bound_chunks_per_s:.2f} | {r.bound_vision_ms:.0f} / {r.bound_prefill_ms:.0f} / {r.bound_decode_ms:.0f} |"
            for r in rows
        ]
    return "\n".join([head, rule, *lines])


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="gemma3-4b")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--batch-sizes", default="1,4,16,32")
    p.add_argument("--frames", default="1,2,4,6", help="frames per chunk")
    p.add_argument("--rounds", type=int, default=3, help="batches measured per row, after one warm-up")
    p.add_argument("--new-tokens", type=int, default=24, help="tokens generated per chunk (a caption is about 20)")
    p.add_argument("--estimate", action="store_true", help="print the bounds only, for the rates given")
    p.add_argument("--tflops", type=float, default=None, help="with --estimate: dense bf16 matmul rate, TFLOP/s")
    p.add_argument("--gbps", type=float, default=None, help="with --estimate: memory bandwidth, GB/s")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    args.frames = [int(x) for x in args.frames.split(",")]
    if args.estimate and (args.tflops is None or args.gbps is None):
        p.error("--estimate needs --tflops and --gbps")
    return args


def main(argv: list[str] | None = None, out: Any = sys.stdout) -> list[Row]:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = CONFIGS[args.config]
    shape = shape_of(config)
    rows: list[Row] = []
    if args.estimate:
        rates = (args.tflops * 1e12, args.gbps * 1e9)
        for batch in args.batch_sizes:
            for frames in args.frames:
                tokens = prompt_tokens_for(shape, frames, build_prompt(BASE_PROMPT, HISTORY, 12.0, 13.0, frames))
                bound = bound_for(shape, batch, frames, tokens, args.new_tokens, rates[0], rates[1], 2)
                rows.append(Row(batch, frames, tokens, 0, 0, 0, 0, 0, 0, batch / bound.total_s, 1000 * bound.vision_s, 1000 * bound.prefill_s, 1000 * bound.decode_s))
        print(f"{args.config}, estimated at {args.tflops:g} TFLOP/s and {args.gbps:g} GB/s, {args.new_tokens} new tokens a chunk", file=out)
        print(table(rows, measured=False), file=out)
    else:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        args.device = device
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        rates = measure_machine(torch, device, dtype)
        model, processor, hf_config = build_model(torch, config, device, dtype)
        timer = StageTimer(torch, model, device)
        print(
            f"{args.config} with random weights on {name} ({dtype}): matmul {rates[0] / 1e12:.1f} TFLOP/s, memory {rates[1] / 1e9:.0f} GB/s measured; "
            f"{args.new_tokens} new tokens a chunk; median of {args.rounds} batches a row",
            file=out,
        )
        for batch in args.batch_sizes:
            for frames in args.frames:
                rows.append(measure_row(torch, model, processor, hf_config, shape, args, batch, frames, rates, timer))
                print(f"  measured batch {batch} × {frames} frames", file=sys.stderr)
        print(table(rows, measured=True), file=out)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows


if __name__ == "__main__":
    main()
