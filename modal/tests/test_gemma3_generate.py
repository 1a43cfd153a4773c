"""The Gemma app's generate path (`gemma3_generate_batch`) through a real Gemma3Processor and a tiny random Gemma 3, on CPU.

No checkpoint can be downloaded here, so the tokenizer is built in place: a word-level
vocabulary over Gemma 3's ids with its special tokens where Gemma 3 has them, and a chat
template of Gemma's shape. What is checked is what batching could break: the processor
takes chats with different numbers of images, pads them on the left, and every row of
one batched `generate` is what that request alone would give, cut at its own stop token.
"""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "gpu"))

try:
    import numpy as np
    import torch
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, PreTrainedTokenizerFast

    try:
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers name it without the suffix
        from transformers import Gemma3ImageProcessor as ImageProcessor
    MISSING = None
except ImportError as error:  # pragma: no cover - depends on the machine
    MISSING = f"torch, transformers and pillow are needed to run the Gemma generate path ({error}); .ci/run installs them"
    print(f"skipping the Gemma generate path: {MISSING}", file=sys.stderr)

from vlm_core import Prepared, gemma3_generate_batch  # noqa: E402

# Gemma 3's special tokens at Gemma 3's ids (Gemma3Config's defaults for the image ones).
SPECIAL = {
    "<pad>": 0,
    "<eos>": 1,
    "<bos>": 2,
    "<unk>": 3,
    "<start_of_turn>": 105,
    "<end_of_turn>": 106,
    "<start_of_image>": 255999,
    "<end_of_image>": 256000,
    "<image_soft_token>": 262144,
}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@unittest.skipIf(MISSING is not None, MISSING or "")
class Gemma3GenerateBatchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from vlm_throughput import TINY

        vocab = {f"w{i}": i for i in range(TINY["text_config"]["vocab_size"])}
        for token, token_id in SPECIAL.items():
            del vocab[f"w{token_id}"]
            vocab[token] = token_id
        backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Whitespace()
        backend.add_special_tokens(list(SPECIAL))
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<bos>",
            eos_token="<eos>",
            pad_token="<pad>",
            unk_token="<unk>",
            extra_special_tokens={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
            chat_template=CHAT_TEMPLATE,
        )
        tokenizer.padding_side = "left"  # as the app sets it
        size = TINY["vision_config"]["image_size"]
        cls.processor = Gemma3Processor(
            image_processor=ImageProcessor(size={"height": size, "width": size}),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
            image_seq_length=TINY["mm_tokens_per_image"],
        )
        torch.manual_seed(0)
        cls.model = Gemma3ForConditionalGeneration(Gemma3Config(**TINY)).to(torch.bfloat16).eval()
        cls.model.generation_config.pad_token_id = SPECIAL["<pad>"]
        rng = np.random.default_rng(0)

        def frame():
            return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))

        # Different numbers of frames and prompt lengths: the rows need padding.
        cls.items = [
            Prepared([frame()], "Describe the kitchen."),
            Prepared([frame(), frame(), frame()], "Describe what the wearer is looking at in one short sentence.\nEarlier captions:\n- A kettle on a counter."),
            Prepared([frame(), frame()], "A view."),
        ]

    def generate(self, items):
        return gemma3_generate_batch(self.model, self.processor, items, max_new_tokens=6, temperature=0, top_p=1.0)

    def test_each_row_of_a_padded_batch_is_what_its_request_alone_gives(self):
        self.model.generation_config.eos_token_id = SPECIAL["<eos>"]
        alone = [self.generate([item])[0] for item in self.items]
        with self.assertNoLogs("transformers", level="WARNING"):
            together = self.generate(self.items)
        self.assertEqual(together, alone)
        self.assertTrue(all(text and tokens > 0 for text, tokens in together))

    def test_every_row_stops_at_its_own_stop_token(self):
        self.model.generation_config.eos_token_id = SPECIAL["<eos>"]
        first = self.generate(self.items[:1])[0][0].split()
        # The tiny model's third word for the first request becomes the stop token: that row ends there.
        stop = int(first[2][1:])
        self.model.generation_config.eos_token_id = stop
        try:
            alone = [self.generate([item])[0] for item in self.items]
            together = self.generate(self.items)
        finally:
            self.model.generation_config.eos_token_id = SPECIAL["<eos>"]
        self.assertEqual(together, alone)
        self.assertEqual(together[0], (" ".join(first[:2]), 2))


if __name__ == "__main__":
    unittest.main()
