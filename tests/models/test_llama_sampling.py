"""The repetition penalty the engine applies itself (instead of llama.cpp's penalties sampler, which looks up
every vocabulary entry at every token) changes exactly what llama.cpp's would: the logits of the last 64
sampled tokens, each once however often it occurred, negative ones multiplied and positive ones divided."""

from __future__ import annotations

import numpy as np

from halguru.models.llama_sampling import PENALTY_LAST_N, Sampler


def test_the_penalty_touches_only_recent_tokens_once_each_as_llama_cpp_does() -> None:
    logits = np.array([2.0, -1.0, 0.0, 3.0, -4.0, 1.5], dtype=np.float32)
    sampler = Sampler(chain=None, penalty=1.25)
    sampler.recent.extend([1, 3, 3, 0])
    sampler.penalize(logits)
    penalty = np.float32(1.25)
    expected = np.array([np.float32(2.0) / penalty, np.float32(-1.0) * penalty, 0.0, np.float32(3.0) / penalty,
                         -4.0, 1.5], dtype=np.float32)
    assert logits.tobytes() == expected.tobytes()  # bit for bit: the same float32 arithmetic


def test_only_the_last_64_sampled_tokens_count_and_no_penalty_changes_nothing() -> None:
    logits = np.ones(PENALTY_LAST_N + 2, dtype=np.float32)
    sampler = Sampler(chain=None, penalty=2.0)
    sampler.recent.extend(range(PENALTY_LAST_N + 1))  # token 0 has left the window
    sampler.penalize(logits)
    assert logits[0] == 1.0 and logits[PENALTY_LAST_N] == 0.5 and logits[PENALTY_LAST_N + 1] == 1.0
    untouched = np.ones(4, dtype=np.float32)
    plain = Sampler(chain=None, penalty=1.0)
    plain.recent.extend([0, 1])
    plain.penalize(untouched)
    assert (untouched == 1.0).all()


def test_frequency_and_presence_penalties_match_llama_cpps_own_sampler_bit_for_bit() -> None:
    """OpenAI's frequency_penalty (per occurrence) and presence_penalty (once), after the repetition penalty: the
    logits llama.cpp's penalties sampler leaves, for positive and negative penalties alike."""
    import ctypes

    import llama_cpp

    logits = np.array([2.0, -1.0, 0.0, 3.0, -4.0, 1.5, 0.25], dtype=np.float32)
    recent = [1, 3, 3, 0, 3, 6]
    for repeat, frequency, presence in ((1.25, 0.5, 0.3), (1.0, -0.7, 1.9), (1.1, 0.0, -2.0)):
        ours = logits.copy()
        sampler = Sampler(chain=None, penalty=repeat, frequency=frequency, presence=presence)
        sampler.recent.extend(recent)
        sampler.penalize(ours)
        data = (llama_cpp.llama_token_data * len(logits))(
            *[llama_cpp.llama_token_data(i, float(v), 0.0) for i, v in enumerate(logits)])
        candidates = llama_cpp.llama_token_data_array(data=data, size=len(logits), selected=-1, sorted=False)
        theirs = llama_cpp.llama_sampler_init_penalties(len(logits), PENALTY_LAST_N, repeat, frequency, presence)
        try:
            for token in recent:
                llama_cpp.llama_sampler_accept(theirs, token)
            llama_cpp.llama_sampler_apply(theirs, ctypes.byref(candidates))
        finally:
            llama_cpp.llama_sampler_free(theirs)
        expected = np.array([data[i].logit for i in range(len(logits))], dtype=np.float32)
        assert ours.tobytes() == expected.tobytes(), (repeat, frequency, presence, ours, expected)
        assert (ours != logits).any()
