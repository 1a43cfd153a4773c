"""StreamingVLM (Qwen2.5-VL based) captioning, the rollback alternative to Gemma 3 (SPEC §7).

Same interface as gemma3_vlm_app: `infer_chunk(frames, start_ts_s, end_ts_s,
prompt, session_id)` and `close(session_id)`, same per-session history. Select it
with MODAL_APP_NAME=foresight-streaming-vlm and MODAL_CLASS_NAME=StreamingVLMSession.
Deploy: `MODAL_APP_NAME=foresight-streaming-vlm modal deploy modal/streaming_vlm_app.py`.
Knobs: STREAMING_VLM_MODEL_ID (a Qwen2.5-VL checkpoint, default the StreamingVLM
weights), STREAMING_VLM_MAX_FRAME_EDGE, _MAX_FRAMES_PER_CHUNK, _MAX_HISTORY_ENTRIES,
_MAX_SESSIONS, _MAX_NEW_TOKENS, _TEMPERATURE.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import modal

sys.path.insert(0, str(Path(__file__).parent))
from vlm_core import SessionHistories, decode_frame, env_float, env_int, infer_for  # noqa: E402

APP_NAME = os.environ.get("MODAL_APP_NAME", "foresight-streaming-vlm")
MODEL_ID = os.environ.get("STREAMING_VLM_MODEL_ID", "mit-han-lab/StreamingVLM")
CACHE_DIR = "/cache"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch==2.6.0", "transformers==4.51.3", "accelerate==1.6.0", "pillow==11.2.1", "qwen-vl-utils==0.0.11")
    .env({"HF_HOME": CACHE_DIR, "HF_HUB_CACHE": f"{CACHE_DIR}/hub"})
    .add_local_file(Path(__file__).parent / "vlm_core.py", "/root/vlm_core.py")
)
model_cache = modal.Volume.from_name("foresight-model-cache", create_if_missing=True)

app = modal.App(APP_NAME)


@app.cls(gpu="L40S", image=image, volumes={CACHE_DIR: model_cache}, scaledown_window=300, timeout=600)
class StreamingVLMSession:
    @modal.enter()
    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.max_edge = env_int("STREAMING_VLM_MAX_FRAME_EDGE", 768)
        self.max_frames = env_int("STREAMING_VLM_MAX_FRAMES_PER_CHUNK", 6)
        self.max_new_tokens = env_int("STREAMING_VLM_MAX_NEW_TOKENS", 64)
        self.temperature = env_float("STREAMING_VLM_TEMPERATURE", 0.2)
        self.histories = SessionHistories(
            max_entries=env_int("STREAMING_VLM_MAX_HISTORY_ENTRIES", 6),
            max_sessions=env_int("STREAMING_VLM_MAX_SESSIONS", 256),
        )
        self.processor = AutoProcessor.from_pretrained(MODEL_ID)
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            MODEL_ID, torch_dtype=torch.bfloat16, device_map="cuda"
        ).eval()
        model_cache.commit()

    def generate(self, images: list[Any], prompt: str) -> tuple[str, int]:
        import torch

        messages = [{"role": "user", "content": [*({"type": "image", "image": img} for img in images), {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=images, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=self.temperature > 0,
                temperature=self.temperature if self.temperature > 0 else None,
            )
        new_tokens = output[0][inputs["input_ids"].shape[-1]:]
        return self.processor.decode(new_tokens, skip_special_tokens=True), int(new_tokens.shape[-1])

    @modal.method()
    def infer_chunk(self, frames: list[bytes], start_ts_s: float, end_ts_s: float, prompt: str, session_id: str) -> dict:
        return infer_for(self, frames, start_ts_s, end_ts_s, prompt, session_id, decode_frame)

    @modal.method()
    def close(self, session_id: str) -> None:
        self.histories.close(session_id)
