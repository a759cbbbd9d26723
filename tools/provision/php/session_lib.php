<?php
// SPDX-License-Identifier: Apache-2.0
// Shared by counter.php and hold.php: the session counter the session tests read.

function lab_backend(): string
{
    return $_SERVER['STICKYLB_BACKEND'] ?? 'unknown';
}

// Starts (and so locks) the session; answers 503 when the handler gives up, as an
// application checking session_start() does: no update happens then.
function lab_session_start(): void
{
    header('Content-Type: text/plain');
    header('X-Backend: ' . lab_backend());
    if (!session_start()) {
        http_response_code(503);
        echo 'backend=', lab_backend(), " error=session_start failed\n";
        exit;
    }
}

// The update the tests count: written back (and the lock released) when the script ends.
function lab_count_and_answer(): void
{
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    echo 'backend=', lab_backend(), ' n=', $_SESSION['n'], ' sid=', session_id(), "\n";
}
