<?php
// SPDX-License-Identifier: Apache-2.0
// hold.php?ms=N: takes the session lock, tells the test which worker holds it (the
// test may kill that worker), keeps the lock for N ms, then updates the counter like
// counter.php.
require __DIR__ . '/session_lib.php';

lab_session_start();
$ms = max(0, min(600000, (int) ($_GET['ms'] ?? 1000)));
// Written under another name, then renamed: a reader never sees half a PID.
$dir = $_SERVER['STICKYLB_LAB_RUN_DIR'];
$partial = $dir . '/hold.pid.' . getmypid();
if (file_put_contents($partial, getmypid() . "\n") === false || !rename($partial, $dir . '/hold.pid')) {
    http_response_code(500);
    echo 'backend=', lab_backend(), ' error=cannot write ', $dir, "/hold.pid\n";
    exit;
}
usleep($ms * 1000);
lab_count_and_answer();
