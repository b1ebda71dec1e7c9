//! `cargo xtask screenshot`: renders report.html in headless Chromium (Debian's `chromium`
//! package) to a PNG, to look at the page as a user's browser shows it.

use std::error::Error;
use std::process::Command;

use crate::cli::ScreenshotArgs;

pub fn run(args: &ScreenshotArgs) -> Result<(), Box<dyn Error>> {
    let html = std::fs::canonicalize(&args.html)
        .map_err(|e| format!("{}: {e} (write it with --report DIR)", args.html.display()))?;
    let png = args
        .png
        .clone()
        .unwrap_or_else(|| html.with_file_name("report.png"));
    let png = std::path::absolute(&png)?;
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or(
            "no Chromium found: install it (Debian: `apt-get update && apt-get install -y \
             chromium`) and run this again",
        )?;
    let profile = tempdir()?;
    let status = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={}", args.window.replace('x', ",")))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .status()?;
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() || !png.exists() {
        return Err(format!("{browser} failed ({status})").into());
    }
    eprintln!("wrote {}", png.display());
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf, Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("xtask-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
