"""The GPU measurement script, kept from rotting: its bound arithmetic always, and a tiny model on CPU where torch is installed."""

import io
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import vlm_throughput as bench  # noqa: E402

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401

    MISSING = None
except ImportError as error:  # pragma: no cover - depends on the machine
    MISSING = f"torch and transformers are needed for the CPU run of bench/gpu ({error}); .ci/run installs them"
    print(f"skipping the CPU run of bench/gpu: {MISSING}", file=sys.stderr)


class BoundTest(unittest.TestCase):
    def test_gemma3_4b_costs_from_its_config(self):
        shape = bench.shape_of(bench.GEMMA3_4B)
        # 4,096 patches through a 400 M-parameter encoder: about 5.4 TFLOP a frame.
        self.assertAlmostEqual(shape.vision_flops_per_image / 1e12, 5.4, delta=0.3)
        self.assertAlmostEqual(shape.lm_matmul_params / 1e9, 3.2, delta=0.1)
        self.assertAlmostEqual(shape.embedding_params / 1e9, 0.67, delta=0.01)
        # 256 image tokens a frame, plus BOI/EOI and newlines, plus the text.
        prompt = bench.build_prompt(bench.BASE_PROMPT, bench.HISTORY, 1.0, 2.0, 6)
        self.assertEqual(bench.prompt_tokens_for(shape, 6, prompt) - bench.prompt_tokens_for(shape, 5, prompt), 260)

    def test_frames_cost_more_than_batching_saves(self):
        shape = bench.shape_of(bench.GEMMA3_4B)

        def rate(batch, frames):
            tokens = bench.prompt_tokens_for(shape, frames, bench.build_prompt(bench.BASE_PROMPT, bench.HISTORY, 1.0, 2.0, frames))
            return batch / bench.bound_for(shape, batch, frames, tokens, 24, 181e12, 864e9, 2).total_s

        for frames in (1, 2, 4, 6):
            self.assertGreater(rate(16, frames), rate(1, frames))
        # At 6 frames the encoder bounds a batch; going to 1 frame gains more than batching does.
        self.assertGreater(rate(16, 1) / rate(16, 6), rate(16, 6) / rate(1, 6))

    def test_estimate_mode_prints_a_row_per_pair(self):
        out = io.StringIO()
        rows = bench.main(["--estimate", "--tflops", "181", "--gbps", "864", "--batch-sizes", "1,16", "--frames", "1,6"], out)
        self.assertEqual([(r.batch, r.frames) for r in rows], [(1, 1), (1, 6), (16, 1), (16, 6)])
        self.assertIn("| batch | frames | prompt tokens | bound chunks/s (estimate)", out.getvalue())


@unittest.skipIf(MISSING is not None, MISSING or "")
class TinyCpuRunTest(unittest.TestCase):
    def test_runs_the_apps_batching_path_and_prints_the_table(self):
        out = io.StringIO()
        rows = bench.main(["--config", "tiny", "--device", "cpu", "--batch-sizes", "1,4", "--frames", "1,2", "--rounds", "2", "--new-tokens", "3"], out)
        self.assertEqual([(r.batch, r.frames) for r in rows], [(1, 1), (1, 2), (4, 1), (4, 2)])
        for row in rows:
            self.assertGreater(row.chunks_per_s, 0)
            self.assertGreater(row.bound_chunks_per_s, 0)
            self.assertGreater(row.vision_ms, 0)
            self.assertGreater(row.prefill_ms, 0)
            self.assertGreaterEqual(row.p99_ms, row.p50_ms)
        text = out.getvalue()
        self.assertIn("tiny with random weights on CPU", text)
        self.assertEqual(text.count("\n| "), 5)  # the rule line and four rows after the header


if __name__ == "__main__":
    unittest.main()
