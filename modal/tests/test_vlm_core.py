import asyncio
import time
import unittest

from vlm_core import (
    ChunkBatcher,
    ChunkError,
    ChunkRequest,
    Prepared,
    build_prompt,
    caption_chunk,
    clean_history,
    decode_all,
    first_sentence,
    prepare,
    sample_evenly,
    split_generated,
)


def fake_decode(data: bytes):
    return None if data.startswith(b"bad") else data.decode()


async def inline(fn, *args):
    """Runs the blocking part inline: deterministic, no threads."""
    return fn(*args)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 0.25
        return self.t


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

    def test_history_from_the_caller_is_cleaned_and_bounded(self):
        self.assertEqual(clean_history(["a", " ", 3, "b\n c", None, "d"], 3), ["a", "b c", "d"])
        self.assertEqual(clean_history(["a", "b", "c"], 2), ["b", "c"])
        self.assertEqual(clean_history("not a list", 6), [])
        self.assertEqual(clean_history(None, 6), [])
        self.assertEqual(clean_history(["a"], 0), [])
        self.assertEqual(clean_history(["x" * 500], 1), ["x" * 300])


class PrepareTest(unittest.TestCase):
    def test_samples_decodes_and_prompts_with_the_callers_history(self):
        prepared = prepare(
            ChunkRequest([b"bad0"] + [f"f{i}".encode() for i in range(20)], 1.0, 2.0, "Describe.", "s1", ["earlier one"]),
            decode=fake_decode,
            max_frames=6,
            max_history=6,
        )
        self.assertEqual(len(prepared.images), 6)
        self.assertEqual((prepared.images[0], prepared.images[-1]), ("f0", "f19"))
        self.assertIn("- earlier one", prepared.prompt)

    def test_a_chunk_with_no_decodable_frame_is_a_clear_error(self):
        with self.assertRaisesRegex(ChunkError, "none of the 2 frames decoded"):
            prepare(ChunkRequest([b"bad1", b"bad2"], 0, 1, "p", "s"), decode=fake_decode, max_frames=6, max_history=6)

    def test_decode_all_counts_skips_and_survives_decoder_errors(self):
        def explode(data):
            raise OSError("broken")

        self.assertEqual(decode_all([b"a", b"bad"], fake_decode), (["a"], 1))
        self.assertEqual(decode_all([b"a"], explode), ([], 1))


class Model:
    """A model stand-in: records every batch; answers from each request's own prompt; 'boom' breaks a batch."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def __call__(self, items: list[Prepared]) -> list[tuple[str, int]]:
        prompts = [item.prompt for item in items]
        self.batches.append(prompts)
        if any("boom" in p for p in prompts):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return [(f"Caption for {p}. Extra.", len(p)) for p in prompts]


def run(coro):
    return asyncio.run(coro)


class ChunkBatcherTest(unittest.TestCase):
    def test_requests_of_several_sessions_arriving_together_run_as_one_batch_and_each_gets_its_own_result(self):
        model = Model()

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=8, wait_ms=20, run_blocking=inline)
            results = await asyncio.gather(*(batcher.submit(Prepared(["img"], f"session-{i}")) for i in range(5)))
            return batcher, results

        batcher, results = run(main())
        self.assertEqual(model.batches, [[f"session-{i}" for i in range(5)]])
        self.assertEqual(results, [(f"Caption for session-{i}. Extra.", 9) for i in range(5)])
        self.assertEqual(batcher.stats.sizes, [5])

    def test_batches_hold_at_most_max_batch_size_in_arrival_order(self):
        model = Model()

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=2, wait_ms=1000, run_blocking=inline)
            return await asyncio.gather(*(batcher.submit(Prepared(["img"], f"r{i}")) for i in range(5)))

        results = run(main())
        self.assertEqual(model.batches, [["r0", "r1"], ["r2", "r3"], ["r4"]])
        self.assertEqual([text for text, _ in results], [f"Caption for r{i}. Extra." for i in range(5)])

    def test_a_full_batch_does_not_wait_and_a_lone_request_waits_at_most_wait_ms(self):
        model = Model()

        async def main():
            loop = asyncio.get_running_loop()
            batcher = ChunkBatcher(model, max_batch_size=2, wait_ms=50, run_blocking=inline)
            started = loop.time()
            await asyncio.gather(batcher.submit(Prepared(["i"], "a")), batcher.submit(Prepared(["i"], "b")))
            full = loop.time() - started
            started = loop.time()
            await batcher.submit(Prepared(["i"], "c"))
            return full, loop.time() - started

        full, lone = run(main())
        self.assertLess(full, 0.04)
        self.assertGreaterEqual(lone, 0.045)
        self.assertLess(lone, 1.0)

    def test_one_failing_member_fails_alone(self):
        model = Model()

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=8, wait_ms=10, run_blocking=inline)
            return batcher, await asyncio.gather(
                batcher.submit(Prepared(["i"], "ok-1")),
                batcher.submit(Prepared(["i"], "boom")),
                batcher.submit(Prepared(["i"], "ok-2")),
                return_exceptions=True,
            )

        batcher, results = run(main())
        self.assertEqual(results[0], ("Caption for ok-1. Extra.", 4))
        self.assertIsInstance(results[1], RuntimeError)
        self.assertEqual(results[2], ("Caption for ok-2. Extra.", 4))
        # The whole batch first, then halves until the culprit is alone.
        self.assertEqual(model.batches, [["ok-1", "boom", "ok-2"], ["ok-1"], ["boom", "ok-2"], ["boom"], ["ok-2"]])
        self.assertEqual(batcher.stats.failed, 1)

    def test_one_bad_request_in_sixteen_costs_eight_more_runs_not_sixteen(self):
        model = Model()
        names = [f"ok-{i}" for i in range(16)]
        names[11] = "boom"

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=16, wait_ms=10, run_blocking=inline)
            return await asyncio.gather(*(batcher.submit(Prepared(["i"], n)) for n in names), return_exceptions=True)

        results = run(main())
        self.assertIsInstance(results[11], RuntimeError)
        self.assertEqual([r for i, r in enumerate(results) if i != 11], [(f"Caption for {n}. Extra.", len(n)) for n in names if n != "boom"])
        # Both halves run before the failing one is split again.
        self.assertEqual([len(b) for b in model.batches], [16, 8, 8, 4, 4, 2, 2, 1, 1])

    def test_a_batch_that_always_fails_runs_each_member_alone_after_both_halves_fail(self):
        calls = []

        def broken(items):
            calls.append(len(items))
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        async def main():
            batcher = ChunkBatcher(broken, max_batch_size=16, wait_ms=10, run_blocking=inline)
            return await asyncio.gather(*(batcher.submit(Prepared(["i"], str(i))) for i in range(16)), return_exceptions=True)

        results = run(main())
        self.assertTrue(all(isinstance(r, RuntimeError) for r in results))
        self.assertEqual(calls, [16, 8, 8] + [1] * 16)

    def test_a_batch_too_big_for_the_gpu_is_captioned_in_halves(self):
        batches = []

        def model(items):
            batches.append(len(items))
            if len(items) > 4:
                raise RuntimeError("CUDA out of memory")
            return [("A room.", 2) for _ in items]

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=8, wait_ms=10, run_blocking=inline)
            return await asyncio.gather(*(batcher.submit(Prepared(["i"], str(i))) for i in range(8)))

        self.assertEqual(run(main()), [("A room.", 2)] * 8)
        self.assertEqual(batches, [8, 4, 4])

    def test_after_a_failed_batch_requests_whose_callers_went_away_are_not_run_again(self):
        model = Model()

        async def main():
            started = asyncio.Event()
            release = asyncio.Event()

            async def blocking(fn, items):
                if len(items) > 1:  # the first, failing batch: its callers give up meanwhile
                    started.set()
                    await release.wait()
                return fn(items)

            batcher = ChunkBatcher(model, max_batch_size=8, wait_ms=10, run_blocking=blocking)
            calls = [asyncio.ensure_future(batcher.submit(Prepared(["i"], n))) for n in ("gone-1", "boom", "gone-2", "kept")]
            await started.wait()
            for i in (0, 1, 2):
                calls[i].cancel()
            release.set()
            return await calls[3]

        self.assertEqual(run(main()), ("Caption for kept. Extra.", 4))
        self.assertEqual(model.batches, [["gone-1", "boom", "gone-2", "kept"], ["kept"]])

    def test_a_worker_that_stops_fails_every_request_it_holds_instead_of_leaving_them_waiting(self):
        class Stop(BaseException):
            pass

        def model(items):
            raise Stop()

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=2, wait_ms=10, run_blocking=inline)
            calls = [asyncio.ensure_future(batcher.submit(Prepared(["i"], str(i)))) for i in range(3)]
            done, pending = await asyncio.wait(calls, timeout=2)
            with self.assertRaises(Stop):  # the worker itself ends with what stopped it
                await batcher._worker
            return [c.exception() for c in done], len(pending), batcher

        errors, pending, batcher = run(main())
        self.assertEqual(pending, 0)
        self.assertEqual([str(e) for e in errors], ["the batch worker stopped: Stop()"] * 3)

        # And cancelled: (a container shutting down) everything held fails too.
        async def cancelled():
            release = asyncio.Event()
            running = asyncio.Event()

            async def blocking(fn, items):
                running.set()
                await release.wait()
                return fn(items)

            batcher = ChunkBatcher(Model(), max_batch_size=1, wait_ms=0, run_blocking=blocking)
            calls = [asyncio.ensure_future(batcher.submit(Prepared(["i"], str(i)))) for i in range(2)]
            await asyncio.wait_for(running.wait(), 2)  # the first request is on the GPU, the second queued
            batcher._worker.cancel()
            done, pending = await asyncio.wait(calls, timeout=2)
            return sorted(type(c.exception()).__name__ for c in done), len(pending)

        self.assertEqual(run(cancelled()), (["RuntimeError", "RuntimeError"], 0))

    def test_a_worker_cancelled_before_its_first_step_fails_its_caller(self):
        async def main():
            batcher = ChunkBatcher(Model(), max_batch_size=4, wait_ms=5, run_blocking=inline)
            call = asyncio.ensure_future(batcher.submit(Prepared(["i"], "p")))
            await asyncio.sleep(0)  # submit has created the worker, which has not run yet
            batcher._worker.cancel()
            done, _pending = await asyncio.wait([call], timeout=2)
            return [str(c.exception()) for c in done]

        self.assertEqual(run(main()), ["the batch worker stopped: cancelled"])

    def test_one_batch_on_the_gpu_at_a_time_even_after_a_worker_is_cancelled(self):
        import threading

        running = []
        peak = []
        lock = threading.Lock()
        started = threading.Event()

        def slow(items):
            with lock:
                running.append(1)
                peak.append(len(running))
            started.set()
            time.sleep(0.2)
            with lock:
                running.pop()
            return [("A room.", 2) for _ in items]

        async def main():
            batcher = ChunkBatcher(slow, max_batch_size=1, wait_ms=0)
            first = asyncio.ensure_future(batcher.submit(Prepared(["i"], "a")))
            await asyncio.to_thread(started.wait, 2)
            batcher._worker.cancel()  # its thread goes on generating
            second = await asyncio.wait_for(batcher.submit(Prepared(["i"], "b")), 5)
            await asyncio.wait([first], timeout=2)
            return second, str(first.exception())

        second, first = run(main())
        self.assertEqual(second, ("A room.", 2))
        self.assertEqual(first, "the batch worker stopped: cancelled")
        self.assertEqual(max(peak), 1)

    def test_serves_a_second_event_loop_after_the_first_has_gone(self):
        model = Model()
        batcher = ChunkBatcher(model, max_batch_size=4, wait_ms=5, run_blocking=inline)
        first = run(batcher.submit(Prepared(["i"], "one")))
        second = run(asyncio.wait_for(batcher.submit(Prepared(["i"], "two")), 2))
        self.assertEqual((first[0], second[0]), ("Caption for one. Extra.", "Caption for two. Extra."))

    def test_a_model_that_returns_the_wrong_number_of_results_fails_only_as_it_must(self):
        async def main():
            batcher = ChunkBatcher(lambda items: [("x", 1)], max_batch_size=4, wait_ms=5, run_blocking=inline)
            return await asyncio.gather(*(batcher.submit(Prepared(["i"], str(i))) for i in range(2)), return_exceptions=True)

        results = run(main())
        # Run alone, each gets the one result the model gives.
        self.assertEqual(results, [("x", 1), ("x", 1)])

    def test_a_cancelled_caller_is_left_out_and_the_others_go_on(self):
        model = Model()

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=8, wait_ms=30, run_blocking=inline)
            gone = asyncio.ensure_future(batcher.submit(Prepared(["i"], "gone")))
            kept = asyncio.ensure_future(batcher.submit(Prepared(["i"], "kept")))
            await asyncio.sleep(0)
            gone.cancel()
            return await kept

        self.assertEqual(run(main()), ("Caption for kept. Extra.", 4))
        self.assertEqual(model.batches, [["kept"]])

    def test_runs_the_model_off_the_event_loop_by_default(self):
        import threading

        seen = []

        def model(items):
            seen.append(threading.current_thread() is threading.main_thread())
            return [("A thing.", 2) for _ in items]

        async def main():
            return await ChunkBatcher(model, max_batch_size=4, wait_ms=1).submit(Prepared(["i"], "p"))

        self.assertEqual(run(main()), ("A thing.", 2))
        self.assertEqual(seen, [False])

    def test_rejects_bad_settings(self):
        with self.assertRaises(ValueError):
            ChunkBatcher(Model(), max_batch_size=0, wait_ms=1)


class CaptionChunkTest(unittest.TestCase):
    def caption(self, requests):
        model = Model()

        async def main():
            batcher = ChunkBatcher(model, max_batch_size=8, wait_ms=10, run_blocking=inline)
            return await asyncio.gather(
                *(
                    caption_chunk(r, batcher=batcher, decode=fake_decode, max_frames=6, max_history=2, clock=Clock(), run_blocking=inline)
                    for r in requests
                ),
                return_exceptions=True,
            )

        return model, run(main())

    def test_interleaved_sessions_each_get_their_own_history_in_one_batch(self):
        model, results = self.caption(
            [
                ChunkRequest([b"a1"], 1.0, 2.0, "Describe.", "wearer-a", ["a saw a door", "a saw a desk", "a saw a kettle"]),
                ChunkRequest([b"b1", b"b2"], 3.0, 4.0, "Describe.", "wearer-b", ["b saw a street"]),
                ChunkRequest([b"c1"], 0.0, 1.0, "Describe.", "wearer-c"),
            ]
        )
        [batch] = model.batches
        self.assertIn("- a saw a desk\n- a saw a kettle", batch[0])
        self.assertNotIn("a saw a door", batch[0])  # max_history=2
        self.assertNotIn("b saw", batch[0])
        self.assertIn("- b saw a street", batch[1])
        self.assertNotIn("a saw", batch[1])
        self.assertNotIn("Earlier captions", batch[2])
        self.assertEqual(results[1]["caption"], first_sentence(f"Caption for {batch[1]}. Extra."))
        self.assertEqual(
            {k: results[1][k] for k in ("chunk_start_s", "chunk_end_s", "latency_ms", "tokens_generated")},
            {"chunk_start_s": 3.0, "chunk_end_s": 4.0, "latency_ms": 250.0, "tokens_generated": len(batch[1])},
        )

    def test_an_undecodable_chunk_fails_alone_and_never_reaches_the_model(self):
        model, results = self.caption([ChunkRequest([b"bad"], 0, 1, "p", "s1"), ChunkRequest([b"ok"], 0, 1, "p", "s2")])
        self.assertIsInstance(results[0], ChunkError)
        self.assertIsInstance(results[1], dict)
        self.assertEqual(len(model.batches), 1)
        self.assertEqual(len(model.batches[0]), 1)

    def test_an_empty_chunk_gives_an_empty_caption_without_the_model(self):
        model, results = self.caption([ChunkRequest([], 0, 1, "p", "s")])
        self.assertEqual(results[0]["caption"], "")
        self.assertEqual(model.batches, [])


class SplitGeneratedTest(unittest.TestCase):
    def test_cuts_each_row_after_the_prompt_and_at_its_first_stop_token(self):
        rows = [[0, 0, 5, 6, 11, 12, 1, 0], [0, 7, 5, 6, 13, 14, 15, 16]]
        self.assertEqual(split_generated(rows, 4, {0, 1}), [([11, 12], 2), ([13, 14, 15, 16], 4)])


if __name__ == "__main__":
    unittest.main()
