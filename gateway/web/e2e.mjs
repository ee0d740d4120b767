// End-to-end test of the Todo page in headless Chromium (Debian's, driven by playwright-core):
//   node e2e.mjs http://127.0.0.1:8080 [screenshot.png]
// Signs up, adds three tasks, completes one, deletes one, reloads and finds the same state; a
// second browser context (another user) sees none of them; a task added by another client
// appears live; a bad input shows the server's field message. Exits non-zero on any failure.

import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const screenshot = process.argv[3] ?? "todo-e2e.png";
const password = "correct horse battery";
const stamp = Date.now();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

let passed = 0;
async function step(name, body) {
  const started = Date.now();
  await body();
  passed += 1;
  console.log(`ok ${passed} - ${name} (${Date.now() - started} ms)`);
}

/** The titles shown, and which are done. */
async function shown(page) {
  return page.$$eval("#tasks li", (items) =>
    items.map((li) => ({ title: li.querySelector(".title").textContent, done: li.classList.contains("done") })),
  );
}

async function signUp(page, email) {
  await page.goto(base);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#sign-up");
  await page.waitForSelector("#signed-in:not([hidden])");
}

async function add(page, title) {
  const before = (await shown(page)).length;
  await page.fill("#new-title", title);
  await page.click("#add");
  await page.waitForFunction((n) => document.querySelectorAll("#tasks li").length > n, before);
}

function row(page, title) {
  return page.locator("#tasks li", { hasText: title });
}

try {
  const ada = await (await browser.newContext()).newPage();
  const adaEmail = `ada.${stamp}@example.com`;

  await step("sign up and see an empty list", async () => {
    await signUp(ada, adaEmail);
    assert.equal(await ada.textContent("#who"), adaEmail);
    assert.deepEqual(await shown(ada), []);
  });

  await step("add three tasks, newest first", async () => {
    for (const title of ["Buy milk 🥛", "Walk the dog", "Write the report"]) await add(ada, title);
    assert.deepEqual(
      (await shown(ada)).map((t) => t.title),
      ["Write the report", "Walk the dog", "Buy milk 🥛"],
    );
  });

  await step("complete one", async () => {
    await row(ada, "Walk the dog").locator("input[type=checkbox]").check();
    await ada.waitForSelector("#tasks li.done");
  });

  await step("delete one", async () => {
    await row(ada, "Write the report").locator("button", { hasText: "Delete" }).click();
    await ada.waitForFunction(() => document.querySelectorAll("#tasks li").length === 2);
  });

  await step("reload and see the same state", async () => {
    await ada.reload();
    await ada.waitForFunction(() => document.querySelectorAll("#tasks li").length === 2);
    assert.deepEqual(await shown(ada), [
      { title: "Walk the dog", done: true },
      { title: "Buy milk 🥛", done: false },
    ]);
    assert.equal(await ada.textContent("#count"), "2 tasks");
  });

  await step("another user, in another context, sees none of them", async () => {
    const bob = await (await browser.newContext()).newPage();
    await signUp(bob, `bob.${stamp}@example.com`);
    await bob.waitForSelector("#count:has-text('0 tasks')");
    assert.deepEqual(await shown(bob), []);
    await bob.close();
  });

  await step("a task added by another client appears live", async () => {
    // Another tab is another client: it signs in on its own and adds a task.
    const other = await ada.context().newPage();
    await other.goto(base);
    await other.fill("#email", adaEmail);
    await other.fill("#password", password);
    await other.click("#sign-in");
    await other.waitForSelector("#signed-in:not([hidden])");
    await add(other, "Added elsewhere");
    await other.close();
    // The first tab did nothing: WatchTasks brought the change.
    await row(ada, "Added elsewhere").waitFor({ timeout: 10_000 });
  });

  await step("a bad input shows the server's field message", async () => {
    await ada.fill("#new-title", "   ");
    await ada.click("#add");
    await ada.waitForFunction(() => document.getElementById("error").textContent.length > 0);
    const message = await ada.textContent("#error");
    assert.match(message, /task\.title/);
    assert.match(message, /blank/);
  });

  await step("save a screenshot", async () => {
    await ada.screenshot({ path: screenshot, fullPage: true });
  });

  console.log(`${passed} passed, 0 failed`);
} catch (error) {
  console.error(error);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
