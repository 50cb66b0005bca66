//! The advice a run logs about its warmup.

use crate::telemetry::log;

/// evalscope 1.14.1 warns when warmup cannot keep the start-up burst out of the
/// measured window (parallel > 1 and fewer warmup requests than slots).
pub(crate) fn note(parallel: i64, warmup: u64, sessions: bool) {
    if parallel <= 1 || warmup >= parallel as u64 {
        return;
    }
    let what = if sessions {
        "conversations"
    } else {
        "requests"
    };
    let reason = if warmup == 0 {
        format!(
            "Warmup is disabled, so the first {parallel} measured {what} are released at once \
             against an idle server"
        )
    } else {
        format!(
            "Warmup covers only {warmup} of the {parallel} concurrency slots, so the server \
             meets the measured burst of {parallel} partly cold"
        )
    };
    log::warn(format!(
        "{reason}. Their TTFT carries the start-up burst and can dominate the reported \
         percentiles. Pass --warmup-num {parallel} to send that many unrecorded {what} first, \
         or {} if you also read the max column.",
        2 * parallel
    ));
}
