// The progress page in a real browser (Debian's chromium, driven by playwright-core; no browser is
// downloaded): `node progress_page.js URL SCREENSHOT`, with the hub's login cookies as JSON in
// $DLLAB_HUB_COOKIES (never on the command line). The page sends the browser through the hub's
// OAuth as a teacher's would. Prints one JSON line once the grid shows, then waits for a line on
// stdin (the test adds a check meanwhile), waits for the grid to show one more tried cell without
// a reload, saves a screenshot and prints a last JSON line.
"use strict";
const { chromium } = require("playwright-core");

function say(fields) { process.stdout.write(JSON.stringify(fields) + "\n"); }
const tried = () => document.querySelectorAll("td.cell:not(.none)").length;

(async () => {
  const [url, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 640 } });
    await context.addCookies(JSON.parse(process.env.DLLAB_HUB_COOKIES));
    const page = await context.newPage();
    let loads = 0;
    page.on("load", () => { loads += 1; });
    await page.goto(url);
    await page.waitForSelector("td.cell", { timeout: 20000 });
    const before = await page.evaluate(tried);
    say({ ready: true, tried: before, status: await page.textContent("#status") });
    await new Promise((resolve) => process.stdin.once("data", resolve));
    await page.waitForFunction((n) => document.querySelectorAll("td.cell:not(.none)").length > n, before, { timeout: 20000 });
    await page.screenshot({ path: screenshot, fullPage: true });
    say({
      loads,
      tried: await page.evaluate(tried),
      stuck: await page.locator("td.cell.stuck").count(),
      passed: await page.locator("td.cell.passed").count(),
      notyet: await page.locator("td.cell.notyet").count(),
      optedout: await page.locator("td.cell.optedout").count(),
      status: await page.textContent("#status"),
    });
  } finally {
    await browser.close();
  }
})().catch((error) => { say({ error: String(error) }); process.exit(1); });
