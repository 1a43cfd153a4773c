"""Gemma 3 (4B IT) captioning for glasses chunks, as a Modal class (SPEC §7).

Deploy: `modal deploy modal/gemma3_vlm_app.py` (app name from MODAL_APP_NAME,
default `foresight-gemma3-vlm`; class `Gemma3VLMSession`).

`infer_chunk(frames, start_ts_s, end_ts_s, prompt, session_id, history=None)`:
the class keeps no per-session state (the server sends the history), and the
chunks of concurrent calls are captioned in one padded batch (`ChunkBatcher`,
see vlm_core.py for why not `@modal.batched`). `close(session_id)` is kept for
servers of before and does nothing.

Knobs, all read and checked at deploy time (`ServingKnobs`: a bad value stops
the deploy with a message naming it) and baked into the image, so the
container reads the same: GEMMA3_MAX_BATCH_SIZE (16), GEMMA3_BATCH_WAIT_MS
(30), GEMMA3_MIN_CONTAINERS (0), GEMMA3_MAX_CONTAINERS (4),
GEMMA3_SCALEDOWN_WINDOW_S (300), GEMMA3_GPU (L40S), GEMMA3_MODEL_ID
(google/gemma-3-4b-it), GEMMA3_MAX_FRAME_EDGE (896),
GEMMA3_MAX_FRAMES_PER_CHUNK (6), GEMMA3_MAX_HISTORY_ENTRIES (6),
GEMMA3_MAX_NEW_TOKENS (64), GEMMA3_TEMPERATURE (0.2), GEMMA3_TOP_P (0.9).
GEMMA3_HF_SECRET names an optional Modal secret holding HF_TOKEN (Gemma is a
gated model).
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
    ServingKnobs,
    caption_chunk,
    decode_frame,
    gemma3_generate_batch,
)

APP_NAME = os.environ.get("MODAL_APP_NAME", "foresight-gemma3-vlm")
CACHE_DIR = "/cache"

# Every knob, checked here at deploy time and baked into the image: the container reads the same values.
KNOBS = ServingKnobs.from_env("GEMMA3", model_id="google/gemma-3-4b-it", max_frame_edge=896)

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch==2.13.0", "transformers==5.18.0", "accelerate==1.15.0", "pillow==12.3.0")
    .env(
        {
            "HF_HOME": CACHE_DIR,
            "HF_HUB_CACHE": f"{CACHE_DIR}/hub",
            **KNOBS.container_env(),
        }
    )
    .add_local_file(Path(__file__).parent / "vlm_core.py", "/root/vlm_core.py")
)
model_cache = modal.Volume.from_name("foresight-model-cache", create_if_missing=True)
hf_secret_name = os.environ.get("GEMMA3_HF_SECRET")
secrets = [modal.Secret.from_name(hf_secret_name)] if hf_secret_name else []

app = modal.App(APP_NAME)


@app.cls(
    gpu=KNOBS.gpu,
    image=image,
    volumes={CACHE_DIR: model_cache},
    secrets=secrets,
    min_containers=KNOBS.min_containers,
    max_containers=KNOBS.max_containers,
    scaledown_window=KNOBS.scaledown_window_s,
    timeout=600,
)
# Up to two batches' worth of calls per container: one batch on the GPU, the next one gathering.
@modal.concurrent(max_inputs=2 * KNOBS.max_batch_size, target_inputs=KNOBS.max_batch_size)
class Gemma3VLMSession:
    @modal.enter()
    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Gemma3ForConditionalGeneration

        self.max_edge = KNOBS.max_frame_edge
        self.max_frames = KNOBS.max_frames_per_chunk
        self.max_history = KNOBS.max_history_entries
        self.max_new_tokens = KNOBS.max_new_tokens
        self.temperature = KNOBS.temperature
        self.top_p = KNOBS.top_p
        self.processor = AutoProcessor.from_pretrained(KNOBS.model_id)
        # Batched generation: prompts padded on the left, so every row's answer starts at the same index.
        self.processor.tokenizer.padding_side = "left"
        self.model = Gemma3ForConditionalGeneration.from_pretrained(KNOBS.model_id, dtype=torch.bfloat16, device_map="cuda").eval()
        model_cache.commit()
        self.batcher = ChunkBatcher(
            self.generate_batch,
            max_batch_size=KNOBS.max_batch_size,
            wait_ms=KNOBS.batch_wait_ms,
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
