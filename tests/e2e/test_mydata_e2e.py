""" "Your data" in Debian's Chromium: "Download my data" is a real download holding every run
and saved config; "Delete my data" asks in plain words first and is confirmed by typing the
user name, then the page shows an empty history and a new conversation, and so does a reload
(a new kernel reading the run log).

Its own module: deleting empties the module's run log, which other modules' tests rely on."""

from __future__ import annotations

import json
from pathlib import Path

from consortium_lab import runs
from consortium_lab.widget.mydata import data_owner

from .test_chat_e2e import ask, configure, expect, open_chat, wait_status
from fake_openai import ModelScript
from helpers import arbiter_reply, member_reply


def test_download_then_delete_my_data(voila, models, page):
    models.add_model("md-a", ModelScript(reply=member_reply("Blue, by scattering.", 0.8)))
    models.add_model("md-judge", ModelScript(reply=arbiter_reply("Blue.", 0.9)))
    open_chat(page, voila)
    configure(page, "md-a", "md-judge", max_iterations=1)
    for count, prompt in enumerate(("md-marker one?", "md-marker two?"), start=1):
        ask(page, prompt)
        expect(page.locator(".cl-turn")).to_have_count(count, timeout=60_000)
        assert wait_status(page, page.locator(".cl-turn").nth(count - 1), "completed")
    page.get_by_placeholder("name").fill("md-saved")
    page.get_by_label("Save the current configuration under the name given").click()
    expect(page.locator(".cl-settings select option[value='md-saved']")).to_have_count(1)
    expect(page.locator(".cl-history-item")).to_have_count(2)

    menu = page.locator(".cl-header .cl-mydata")
    menu.locator("summary").click()
    with page.expect_download() as info:
        menu.get_by_role("button", name="Download my data").click()
    download = info.value
    assert download.suggested_filename.startswith("consortium-my-data-")
    data = json.loads(Path(download.path()).read_text())
    assert sorted(r["original_prompt"] for r in data["runs"]) == [
        "md-marker one?",
        "md-marker two?",
    ]
    assert sorted(r["metadata"]["run_id"] for r in data["runs"]) == sorted(
        r["id"] for r in runs.list(path=voila.run_log)
    )
    assert "md-saved" in data["configs"]

    menu.get_by_role("button", name="Delete my data…").click()
    dialog = page.get_by_role("alertdialog", name="Delete all your data?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("every run in your run log")
    expect(dialog).to_contain_text("all your saved configs")
    expect(dialog).to_contain_text("cannot be undone")
    # Confirmed by typing the user name (the OS user here: no hub); until then, disabled.
    name = data_owner()
    expect(dialog.locator(".cl-mydata-name")).to_have_text(name)
    expect(dialog).to_contain_text(f"Type your user name, {name}, to confirm")
    delete = dialog.get_by_role("button", name="Delete everything")
    expect(delete).to_be_disabled()
    typed = dialog.get_by_label("Type your user name to confirm")
    typed.fill(name + "x")
    expect(delete).to_be_disabled()
    typed.fill(name)
    expect(delete).to_be_enabled()
    delete.click()
    expect(menu.locator(".cl-mydata-result")).to_have_text(
        "Deleted 2 runs and 1 saved config.", timeout=60_000
    )
    expect(page.locator(".cl-turn")).to_have_count(0)
    expect(page.locator(".cl-history-item")).to_have_count(0)
    expect(page.locator(".cl-settings select option[value='md-saved']")).to_have_count(0)
    assert runs.list(path=voila.run_log) == []

    page.reload()
    page.wait_for_selector(".cl-root[data-ready='true']", timeout=90_000)
    expect(page.locator(".cl-history-item")).to_have_count(0)
    expect(page.locator(".cl-turn")).to_have_count(0)
    expect(page.locator(".cl-conversation .cl-empty")).to_be_visible()
    expect(page.locator(".cl-history .cl-empty")).to_have_text("No runs yet.")
    assert page.outside == [], page.outside
    assert page.errors == [], page.errors
