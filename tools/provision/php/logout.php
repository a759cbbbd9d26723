<?php
// SPDX-License-Identifier: Apache-2.0
// Logout: the session is destroyed (the handler's delete of its key).
// "backend=beN logged_out sid=<session id>".
require __DIR__ . '/session_lib.php';

lab_session_start();
$sid = session_id();
if (!session_destroy()) {
    http_response_code(503);
    echo 'backend=', lab_backend(), " error=session_destroy failed\n";
    exit;
}
echo 'backend=', lab_backend(), ' logged_out sid=', $sid, "\n";
