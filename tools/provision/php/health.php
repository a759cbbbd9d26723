<?php
// SPDX-License-Identifier: Apache-2.0
// A health check that exercises what users need: Apache, PHP and a session round trip
// through the session store (the agent and memcached). Each backend has one fixed
// health session, so checks create no sessions. 200 "ok ..." when the value written
// by the previous check reads back and the new one is stored; 503 otherwise.
require __DIR__ . '/session_lib.php';

header('Content-Type: text/plain');
header('Cache-Control: no-store');
session_id('stickylbhealth' . preg_replace('/[^a-zA-Z0-9]/', '', lab_backend()));
if (!@session_start()) {
    http_response_code(503);
    echo 'backend=', lab_backend(), " health=fail reason=session_start\n";
    exit;
}
$_SESSION['checks'] = ($_SESSION['checks'] ?? 0) + 1;
if (!session_write_close()) {
    http_response_code(503);
    echo 'backend=', lab_backend(), " health=fail reason=session_write\n";
    exit;
}
echo 'backend=', lab_backend(), ' health=ok checks=', $_SESSION['checks'], "\n";
