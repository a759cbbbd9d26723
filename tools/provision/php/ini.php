<?php
// SPDX-License-Identifier: Apache-2.0
// ini.php?name=NAME: the value PHP runs with (tests check the lab applied a setting).
header('Content-Type: text/plain');
$value = ini_get($_GET['name'] ?? '');
if ($value === false) {
    http_response_code(404);
    echo "unknown setting\n";
    exit;
}
echo $value, "\n";
