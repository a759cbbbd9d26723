<?php
// SPDX-License-Identifier: Apache-2.0
// One session update: "backend=beN n=<counter> sid=<session id>".
require __DIR__ . '/session_lib.php';

lab_session_start();
lab_count_and_answer();
