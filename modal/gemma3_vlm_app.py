"""Gemma 3 (4B IT) captioning for glasses chunks, as a Modal class (SPEC §7).

Deploy: `modal deploy modal/gemma3_vlm_app.py` (app name from MODAL_APP_NAME,
default `foresight-gemma3-vlm`; class `Gemma3VLMSession`).

`infer_chunk(frames, start_ts_s, end_ts_s, prompt, session_id, history=None)`:
the class keeps no per-session state (the server sends the history), and the
chunks of concurrent calls are captioned in one padded batch (`ChunkBatcher`,
see vlm_core.py for why not `@modal.batched`). `close(session_id)` is kept for
servers of before and does nothing.

Knobs, read at deploy time and passed to the container: GEMMA3_MAX_BATCH_SIZE
(16), GEMMA3_BATCH_WAIT_MS (30), GEMMA3_MIN_CONTAINERS (0),
GEMMA3_MAX_CONTAINERS (4), GEMMA3_SCALEDOWN_WINDOW_S (300), GEMMA3_GPU (L40S).
Read in the container: GEMMA3_MODEL_ID, GEMMA3_MAX_FRAME_EDGE,
GEMMA3_MAX_FRAMES_PER_CHUNK, GEMMA3_MAX_HISTORY_ENTRIES, GEMMA3_MAX_NEW_TOKENS,
GEMMA3_TEMPERATURE, GEMMA3_TOP_P. GEMMA3_HF_SECRET names an optional Modal
secret holding HF_TOKEN (Gemma is a gated model).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import modal

sys.path.insert(0, str(Path(__file__).parent))
from vlm_core import (  # noqa: E402
    ChunkBatcher,
    ChunkRequest,
    Prepared,
    caption_chunk,
    decode_frame,
    env_float,
    env_int,
    gemma3_generate_batch,
)

APP_NAME = os.environ.get("MODAL_APP_NAME", "foresight-gemma3-vlm")
MODEL_ID = os.environ.get("GEMMA3_MODEL_ID", "google/gemma-3-4b-it")
CACHE_DIR = "/cache"

# Serving knobs: the class options are fixed at deploy time, and the container gets the same values.
MAX_BATCH_SIZE = env_int("GEMMA3_MAX_BATCH_SIZE", 16)
BATCH_WAIT_MS = env_int("GEMMA3_BATCH_WAIT_MS", 30)
MIN_CONTAINERS = env_int("GEMMA3_MIN_CONTAINERS", 0)
MAX_CONTAINERS = env_int("GEMMA3_MAX_CONTAINERS", 4)
SCALEDOWN_WINDOW_S = env_int("GEMMA3_SCALEDOWN_WINDOW_S", 300)
GPU = os.environ.get("GEMMA3_GPU", "L40S")

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch==2.13.0", "transformers==5.18.0", "accelerate==1.15.0", "pillow==12.3.0")
    .env(
        {
            "HF_HOME": CACHE_DIR,
            "HF_HUB_CACHE": f"{CACHE_DIR}/hub",
            "GEMMA3_MAX_BATCH_SIZE": str(MAX_BATCH_SIZE),
            "GEMMA3_BATCH_WAIT_MS": str(BATCH_WAIT_MS),
        }
    )
    .add_local_file(Path(__file__).parent / "vlm_core.py", "/root/vlm_core.py")
)
model_cache = modal.Volume.from_name("foresight-model-cache", create_if_missing=True)
hf_secret_name = os.environ.get("GEMMA3_HF_SECRET")
secrets = [modal.Secret.from_name(hf_secret_name)] if hf_secret_name else []

app = modal.App(APP_NAME)


@app.cls(
    gpu=GPU,
    image=image,
    volumes={CACHE_DIR: model_cache},
    secrets=secrets,
    min_containers=MIN_CONTAINERS,
    max_containers=MAX_CONTAINERS,
    scaledown_window=SCALEDOWN_WINDOW_S,
    timeout=600,
)
# Up to two batches' worth of calls per container: one batch on the GPU, the next one gathering.
@modal.concurrent(max_inputs=2 * MAX_BATCH_SIZE, target_inputs=MAX_BATCH_SIZE)
class Gemma3VLMSession:
    @modal.enter()
    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Gemma3ForConditionalGeneration

        self.max_edge = env_int("GEMMA3_MAX_FRAME_EDGE", 896)
        self.max_frames = env_int("GEMMA3_MAX_FRAMES_PER_CHUNK", 6)
        self.max_history = env_int("GEMMA3_MAX_HISTORY_ENTRIES", 6)
        self.max_new_tokens = env_int("GEMMA3_MAX_NEW_TOKENS", 64)
        self.temperature = env_float("GEMMA3_TEMPERATURE", 0.2)
        self.top_p = env_float("GEMMA3_TOP_P", 0.9)
        self.processor = AutoProcessor.from_pretrained(MODEL_ID)
        # Batched generation: prompts padded on the left, so every row's answer starts at the same index.
        self.processor.tokenizer.padding_side = "left"
        self.model = Gemma3ForConditionalGeneration.from_pretrained(MODEL_ID, dtype=torch.bfloat16, device_map="cuda").eval()
        model_cache.commit()
        self.batcher = ChunkBatcher(
            self.generate_batch,
            max_batch_size=env_int("GEMMA3_MAX_BATCH_SIZE", 16),
            wait_ms=env_int("GEMMA3_BATCH_WAIT_MS", 30),
        )

    def generate_batch(self, items: list[Prepared]) -> list[tuple[str, int]]:
        return gemma3_generate_batch(
            self.model, self.processor, items, max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p
        )

    @modal.method()
    async def infer_chunk(
        self,
        frames: list[bytes],
        start_ts_s: float,
        end_ts_s: float,
        prompt: str,
        session_id: str,
        history: Optional[list[str]] = None,
    ) -> dict:
        return await caption_chunk(
            ChunkRequest(frames, start_ts_s, end_ts_s, prompt, session_id, history or ()),
            batcher=self.batcher,
            decode=lambda data: decode_frame(data, self.max_edge),
            max_frames=self.max_frames,
            max_history=self.max_history,
        )

    @modal.method()
    def close(self, session_id: str) -> None:
        """Kept for servers of before: the class holds nothing per session."""
        return None
