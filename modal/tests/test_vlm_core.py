import unittest

from vlm_core import (
    ChunkError,
    ChunkRequest,
    SessionHistories,
    build_prompt,
    caption_chunk,
    decode_all,
    first_sentence,
    sample_evenly,
)


def fake_decode(data: bytes):
    return None if data.startswith(b"bad") else data.decode()


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 0.25
        return self.t


class SessionHistoriesTest(unittest.TestCase):
    def test_history_is_per_session_and_bounded(self):
        h = SessionHistories(max_entries=2, max_sessions=10)
        for caption in ["a", "b", "c"]:
            h.add("s1", caption)
        h.add("s2", "x")
        self.assertEqual(h.get("s1"), ["b", "c"])
        self.assertEqual(h.get("s2"), ["x"])
        self.assertEqual(h.get("unknown"), [])

    def test_least_recently_used_session_is_evicted(self):
        h = SessionHistories(max_entries=3, max_sessions=2)
        h.add("s1", "one")
        h.add("s2", "two")
        h.get("s1")  # s1 is now the most recent
        h.add("s3", "three")
        self.assertIn("s1", h)
        self.assertNotIn("s2", h)
        self.assertIn("s3", h)

    def test_close_forgets_a_session(self):
        h = SessionHistories()
        h.add("s1", "one")
        h.close("s1")
        self.assertEqual(h.get("s1"), [])
        self.assertEqual(len(h), 0)


class SamplingTest(unittest.TestCase):
    def test_samples_to_six_with_first_and_last(self):
        frames = list(range(30))
        sample = sample_evenly(frames, 6)
        self.assertEqual(len(sample), 6)
        self.assertEqual(sample[0], 0)
        self.assertEqual(sample[-1], 29)
        self.assertEqual(sample, sorted(sample))

    def test_keeps_short_chunks_whole(self):
        self.assertEqual(sample_evenly([1, 2, 3], 6), [1, 2, 3])
        self.assertEqual(sample_evenly([], 6), [])
        self.assertEqual(sample_evenly([1, 2, 3], 1), [3])


class PromptTest(unittest.TestCase):
    def test_prompt_names_the_window_and_the_history(self):
        prompt = build_prompt("Describe the scene.", ["a desk", "a kettle"], 1.0, 2.5, 4)
        self.assertIn("Describe the scene.", prompt)
        self.assertIn("4 images", prompt)
        self.assertIn("1.0 s to 2.5 s", prompt)
        self.assertIn("- a desk\n- a kettle", prompt)

    def test_prompt_without_history_says_nothing_of_it(self):
        self.assertNotIn("Earlier captions", build_prompt("Describe.", [], 0, 1, 1))

    def test_first_sentence(self):
        self.assertEqual(first_sentence("  A man reads.  He smiles. "), "A man reads.")
        self.assertEqual(first_sentence("A cat\non a mat"), "A cat on a mat")


class CaptionChunkTest(unittest.TestCase):
    def setUp(self):
        self.h = SessionHistories(max_entries=6, max_sessions=8)
        self.prompts = []

    def generate(self, images, prompt):
        self.prompts.append((images, prompt))
        return f"I see {len(images)} frames. More text.", 7

    def run_chunk(self, frames, session="s1", start=1.0, end=2.0):
        return caption_chunk(
            ChunkRequest(frames, start, end, "Describe.", session),
            histories=self.h,
            decode=fake_decode,
            generate=self.generate,
            max_frames=6,
            clock=Clock(),
        )

    def test_captions_a_chunk_and_remembers_it_for_that_session_only(self):
        out = self.run_chunk([b"f1", b"f2"])
        self.assertEqual(
            out,
            {"caption": "I see 2 frames.", "chunk_start_s": 1.0, "chunk_end_s": 2.0, "latency_ms": 250.0, "tokens_generated": 7},
        )
        self.run_chunk([b"f3"], session="s1")
        self.assertIn("- I see 2 frames.", self.prompts[1][1])
        self.run_chunk([b"f4"], session="s2")
        self.assertNotIn("Earlier captions", self.prompts[2][1])

    def test_samples_at_most_six_frames(self):
        self.run_chunk([f"f{i}".encode() for i in range(20)])
        images = self.prompts[0][0]
        self.assertEqual(len(images), 6)
        self.assertEqual((images[0], images[-1]), ("f0", "f19"))

    def test_skips_frames_that_do_not_decode(self):
        self.run_chunk([b"bad1", b"f2", b"bad3"])
        self.assertEqual(self.prompts[0][0], ["f2"])

    def test_a_chunk_with_no_decodable_frame_is_a_clear_error(self):
        with self.assertRaisesRegex(ChunkError, "none of the 2 frames decoded"):
            self.run_chunk([b"bad1", b"bad2"])
        self.assertEqual(self.prompts, [])

    def test_an_empty_chunk_gives_an_empty_caption_without_the_model(self):
        out = self.run_chunk([])
        self.assertEqual(out["caption"], "")
        self.assertEqual(self.prompts, [])

    def test_decode_all_counts_skips_and_survives_decoder_errors(self):
        def explode(data):
            raise OSError("broken")

        self.assertEqual(decode_all([b"a", b"bad"], fake_decode), (["a"], 1))
        self.assertEqual(decode_all([b"a"], explode), ([], 1))


if __name__ == "__main__":
    unittest.main()
