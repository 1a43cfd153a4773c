"""StreamingVLM (Qwen2.5-VL based) captioning, the rollback alternative to Gemma 3 (SPEC §7).

Same interface and serving as gemma3_vlm_app: `infer_chunk(frames, start_ts_s,
end_ts_s, prompt, session_id, history=None)` with no per-session state,
concurrent calls captioned in one padded batch, and a `close(session_id)` that
does nothing. Select it with MODAL_APP_NAME=foresight-streaming-vlm and
MODAL_CLASS_NAME=StreamingVLMSession.
Deploy: `MODAL_APP_NAME=foresight-streaming-vlm modal deploy modal/streaming_vlm_app.py`.
Knobs, all read and checked at deploy time and baked into the image (as in
gemma3_vlm_app): STREAMING_VLM_MAX_BATCH_SIZE (16), _BATCH_WAIT_MS (30),
_MIN_CONTAINERS (0), _MAX_CONTAINERS (4), _SCALEDOWN_WINDOW_S (300), _GPU (L40S),
_MODEL_ID (a Qwen2.5-VL checkpoint, default the StreamingVLM weights),
_MAX_FRAME_EDGE (768), _MAX_FRAMES_PER_CHUNK (6), _MAX_HISTORY_ENTRIES (6),
_MAX_NEW_TOKENS (64), _TEMPERATURE (0.2).
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
    qwen_generate_batch,
)

APP_NAME = os.environ.get("MODAL_APP_NAME", "foresight-streaming-vlm")
CACHE_DIR = "/cache"

# Every knob, checked here at deploy time and baked into the image: the container reads the same values.
KNOBS = ServingKnobs.from_env("STREAMING_VLM", model_id="mit-han-lab/StreamingVLM", max_frame_edge=768)

image = (
    modal.Image.debian_slim(python_version="3.11")
    # torchvision: Qwen2.5-VL's processor has a video processor, which transformers builds only with it.
    .pip_install("torch==2.13.0", "torchvision==0.28.0", "transformers==5.18.0", "accelerate==1.15.0", "pillow==12.3.0", "qwen-vl-utils==0.0.11")
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

app = modal.App(APP_NAME)


@app.cls(
    gpu=KNOBS.gpu,
    image=image,
    volumes={CACHE_DIR: model_cache},
    min_containers=KNOBS.min_containers,
    max_containers=KNOBS.max_containers,
    scaledown_window=KNOBS.scaledown_window_s,
    timeout=600,
)
@modal.concurrent(max_inputs=2 * KNOBS.max_batch_size, target_inputs=KNOBS.max_batch_size)
class StreamingVLMSession:
    @modal.enter()
    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.max_edge = KNOBS.max_frame_edge
        self.max_frames = KNOBS.max_frames_per_chunk
        self.max_history = KNOBS.max_history_entries
        self.max_new_tokens = KNOBS.max_new_tokens
        self.temperature = KNOBS.temperature
        self.processor = AutoProcessor.from_pretrained(KNOBS.model_id)
        self.processor.tokenizer.padding_side = "left"
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(KNOBS.model_id, dtype=torch.bfloat16, device_map="cuda").eval()
        model_cache.commit()
        self.batcher = ChunkBatcher(
            self.generate_batch,
            max_batch_size=KNOBS.max_batch_size,
            wait_ms=KNOBS.batch_wait_ms,
        )

    def generate_batch(self, items: list[Prepared]) -> list[tuple[str, int]]:
        return qwen_generate_batch(self.model, self.processor, items, max_new_tokens=self.max_new_tokens, temperature=self.temperature)

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
