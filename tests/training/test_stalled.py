from training.stalled import CHANCE_LOSS, RECORDS, StalledDiscriminator

AT_CHANCE = {"loss_d": CHANCE_LOSS + 0.001, "d_real": 0.004, "d_fake": 0.003}


def test_d_pinned_at_chance_for_ten_records_is_warned_about_once():
    watch = StalledDiscriminator()
    answers = [watch.check(50 * (i + 1), AT_CHANCE, 50) for i in range(RECORDS + 3)]
    assert answers[:RECORDS - 1] == [None] * (RECORDS - 1)
    assert answers[RECORDS - 1].startswith(f"step {50 * RECORDS}: D's loss has sat at 2 ln 2 = 1.386 for the last "
                                           f"{50 * RECORDS} steps")
    assert "--no-spectral-norm --r1-gamma 1 --penalty-every 16" in answers[RECORDS - 1]
    assert answers[RECORDS:] == [None] * 3  # once


def test_a_d_that_still_separates_is_not_stalled():
    watch = StalledDiscriminator()
    learning = {"loss_d": 1.30, "d_real": 0.4, "d_fake": -0.3}  # the digits default's usual figures
    apart = {"loss_d": CHANCE_LOSS, "d_real": 0.3, "d_fake": -0.3}  # at 2 ln 2 on average, logits apart
    for i in range(3 * RECORDS):
        record = AT_CHANCE if i % RECORDS else learning  # one healthy record in every ten resets the count
        assert watch.check(i, record, 50) is None
        assert StalledDiscriminator().check(i, apart, 50) is None
