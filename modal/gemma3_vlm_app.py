"""Gemma 3 (4B IT) captioning for glasses chunks, as a Modal class (SPEC §7).

Deploy: `modal deploy modal/gemma3_vlm_app.py` (app name from MODAL_APP_NAME,
default `foresight-gemma3-vlm`; class `Gemma3VLMSession`). Knobs, read in the
container: GEMMA3_MODEL_ID, GEMMA3_MAX_FRAME_EDGE, GEMMA3_MAX_FRAMES_PER_CHUNK,
GEMMA3_MAX_HISTORY_ENTRIES, GEMMA3_MAX_SESSIONS, GEMMA3_MAX_NEW_TOKENS,
GEMMA3_TEMPERATURE, GEMMA3_TOP_P. GEMMA3_HF_SECRET names an optional Modal
secret holding HF_TOKEN (Gemma is a gated model).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import modal

sys.path.insert(0, str(Path(__file__).parent))
from vlm_core import SessionHistories, decode_frame, env_float, env_int, infer_for  # noqa: E402

APP_NAME = os.environ.get("MODAL_APP_NAME", "foresight-gemma3-vlm")
MODEL_ID = os.environ.get("GEMMA3_MODEL_ID", "google/gemma-3-4b-it")
CACHE_DIR = "/cache"


image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch==2.6.0", "transformers==4.51.3", "accelerate==1.6.0", "pillow==11.2.1")
    .env({"HF_HOME": CACHE_DIR, "HF_HUB_CACHE": f"{CACHE_DIR}/hub"})
    .add_local_file(Path(__file__).parent / "vlm_core.py", "/root/vlm_core.py")
)
model_cache = modal.Volume.from_name("foresight-model-cache", create_if_missing=True)
hf_secret_name = os.environ.get("GEMMA3_HF_SECRET")
secrets = [modal.Secret.from_name(hf_secret_name)] if hf_secret_name else []

app = modal.App(APP_NAME)


@app.cls(gpu="L40S", image=image, volumes={CACHE_DIR: model_cache}, secrets=secrets, scaledown_window=300, timeout=600)
class Gemma3VLMSession:
    @modal.enter()
    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Gemma3ForConditionalGeneration

        self.max_edge = env_int("GEMMA3_MAX_FRAME_EDGE", 896)
        self.max_frames = env_int("GEMMA3_MAX_FRAMES_PER_CHUNK", 6)
        self.max_new_tokens = env_int("GEMMA3_MAX_NEW_TOKENS", 64)
        self.temperature = env_float("GEMMA3_TEMPERATURE", 0.2)
        self.top_p = env_float("GEMMA3_TOP_P", 0.9)
        self.histories = SessionHistories(
            max_entries=env_int("GEMMA3_MAX_HISTORY_ENTRIES", 6), max_sessions=env_int("GEMMA3_MAX_SESSIONS", 256)
        )
        self.processor = AutoProcessor.from_pretrained(MODEL_ID)
        self.model = Gemma3ForConditionalGeneration.from_pretrained(
            MODEL_ID, torch_dtype=torch.bfloat16, device_map="cuda"
        ).eval()
        model_cache.commit()

    def generate(self, images: list[Any], prompt: str) -> tuple[str, int]:
        import torch

        messages = [{"role": "user", "content": [*({"type": "image", "image": img} for img in images), {"type": "text", "text": prompt}]}]
        inputs = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        ).to(self.model.device, dtype=torch.bfloat16)
        prompt_length = inputs["input_ids"].shape[-1]
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=self.temperature > 0,
                temperature=self.temperature if self.temperature > 0 else None,
                top_p=self.top_p,
            )
        new_tokens = output[0][prompt_length:]
        return self.processor.decode(new_tokens, skip_special_tokens=True), int(new_tokens.shape[-1])

    @modal.method()
    def infer_chunk(self, frames: list[bytes], start_ts_s: float, end_ts_s: float, prompt: str, session_id: str) -> dict:
        return infer_for(self, frames, start_ts_s, end_ts_s, prompt, session_id, decode_frame)

    @modal.method()
    def close(self, session_id: str) -> None:
        self.histories.close(session_id)
