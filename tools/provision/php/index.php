<?php
// SPDX-License-Identifier: Apache-2.0
// GET / of a PHP lab backend: the same answer as tools/lab/http_backend.py, so tests
// that only ask "which backend answered" work with either application.
header('Content-Type: text/plain');
header('X-Backend: ' . $_SERVER['STICKYLB_BACKEND']);
echo 'backend=', $_SERVER['STICKYLB_BACKEND'], "\n";
