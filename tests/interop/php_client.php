<?php
/*
 * Interop test: drive soapbridge with PHP's SoapClient (ext-soap), the client most GittiGidiyor
 * integrations were written with, used as they use it.
 *
 *     php tests/interop/php_client.php http://127.0.0.1:8080
 *     php tests/interop/php_client.php http://127.0.0.1:8080 large N
 *
 * The first form expects a bridge started from demo/soapbridge.toml with a FRESH bundled
 * reference backend (the calls change its state: a voucher is paid). SoapClient loads each
 * WSDL (and the listingapi-common.xsd it imports) from the bridge in WSDL mode, with HTTP Basic
 * as its only set-up (the `login` and `password` options), and calls the option and payment
 * services over SOAP 1.1 and 1.2 (the payment service's client compresses its requests with
 * gzip, as `compression` makes it). The answers must come back typed as the WSDL says (int,
 * float, bool), a business failure as ackCode "failure" with its error code, and a call the
 * bridge refuses as a SoapFault with the bridge's code.
 *
 * The second form expects a bridge whose product-options backend answers
 * getOptionFeaturesInfo with N generated products (product i: id 1000 + i, title "Ürün i <&>",
 * two options), large enough that the bridge sends it while it writes it (chunked, without a
 * Content-Length), and then with such an answer that the bridge breaks off near its end: every
 * product of the first must come back, in order, typed; the second must fail in SoapClient.
 *
 * Prints "php soapclient: N calls OK" (or "php large answer: N products OK") and exits 0 when
 * every check passes; otherwise says what failed and exits 1.
 */

const API_KEY = 'NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss';
const SECRET = 'demo-secret-change-me';
const ROLE_USER = 'demo';
const ROLE_PASSWORD = 'demo-role-pass';
const EXPIRED_TIME = 1597746714261;

class Check extends Exception {}

function check($ok, $what) {
    if (!$ok) {
        throw new Check($what);
    }
}

function show($v) {
    return var_export($v, true);
}

function check_type($label, $value, $type) {
    check(gettype($value) === $type, "$label: expected $type, got " . gettype($value) . ' ' . show($value));
}

function check_close($label, $value, $expected) {
    check_type($label, $value, 'double');
    check(abs($value - $expected) < 1e-9, "$label: expected $expected, got " . show($value));
}

/* apiKey/sign/time for each call; every call gets a later time than the one before, since the
 * bridge refuses a reused (apiKey, sign, time). */
class Signer {
    private $last = 0;

    function sign($t) {
        return ['apiKey' => API_KEY, 'sign' => md5(API_KEY . SECRET . $t), 'time' => $t];
    }

    function fresh() {
        $t = max((int) floor(microtime(true) * 1000), $this->last + 1);
        $this->last = $t;
        return $this->sign($t);
    }
}

function client($base, $service, $version = SOAP_1_1, $compression = 0) {
    return new SoapClient("$base/listingapi/ws/$service?wsdl", [
        'compression' => $compression,
        'login' => ROLE_USER,
        'password' => ROLE_PASSWORD,
        'soap_version' => $version,
        'cache_wsdl' => WSDL_CACHE_NONE,
        'exceptions' => true,
        'trace' => true,
        'connection_timeout' => 10,
        'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
    ]);
}

/* A call whose SoapFault fails the check with the fault's code and text; gives the
 * operation's result (the `return` part of its document/literal wrapper). */
function call($label, $client, $operation, $args) {
    try {
        $r = $client->__soapCall($operation, [$args]);
        check(is_object($r) && property_exists($r, 'return'), "$label: no return element: " . show($r));
        return $r->return;
    } catch (SoapFault $f) {
        throw new Check("$label: SOAP fault {$f->faultcode}: {$f->getMessage()}");
    }
}

function check_success($label, $r) {
    check(is_object($r), "$label: no result: " . show($r));
    check($r->ackCode === 'success', "$label: ackCode " . show($r->ackCode) . ', error ' . show($r->error ?? null));
    check(!isset($r->error), "$label: success with an error element: " . show($r->error ?? null));
}

function check_failure($label, $r, $code) {
    check(is_object($r), "$label: no result: " . show($r));
    check($r->ackCode === 'failure', "$label: expected ackCode failure, got " . show($r));
    check(isset($r->error), "$label: failure without an error element");
    check($r->error->errorCode === $code, "$label: expected errorCode $code, got " . show($r->error->errorCode));
}

function products_of($label, $r) {
    check(isset($r->products->product), "$label: no products element: " . show($r));
    check_type("$label: products.product", $r->products->product, 'array');
    return $r->products->product;
}

function options_of($label, $p) {
    if (!isset($p->optionFeatures->optionFeature)) {
        return [];
    }
    check_type("$label: optionFeatures.optionFeature", $p->optionFeatures->optionFeature, 'array');
    return $p->optionFeatures->optionFeature;
}

function run_calls($base) {
    $option = client($base, 'IndividualProductOptionService');
    // The payment service's client compresses its requests, as many PHP integrations do.
    $payment = client($base, 'IndividualProductPaymentService', SOAP_1_1,
        SOAP_COMPRESSION_ACCEPT | SOAP_COMPRESSION_GZIP | 5);
    $option12 = client($base, 'IndividualProductOptionService', SOAP_1_2);
    $signer = new Signer();
    $n = 0;

    // getOptionFeaturesInfo: one product, its one option, typed.
    $label = 'getOptionFeaturesInfo';
    $r = call($label, $option, 'getOptionFeaturesInfo',
        $signer->fresh() + ['productIds' => ['item' => [587300354]], 'lang' => 'en']);
    $n++;
    check_success($label, $r);
    check_type("$label: productCount", $r->productCount, 'integer');
    check($r->productCount === 1, "$label: productCount " . show($r->productCount));
    $products = products_of($label, $r);
    check(count($products) === 1, "$label: expected one product, got " . show($products));
    $p = $products[0];
    check($p->productId === 587300354, "$label: productId " . show($p->productId));
    check($p->productTitle === 'Kırmızı Deri Cüzdan', "$label: productTitle " . show($p->productTitle));
    $options = options_of($label, $p);
    check(count($options) === 1, "$label: expected one option, got " . show($options));
    $o = $options[0];
    check($o->optionId === 1 && $o->duration === 7, "$label: option " . show($o));
    check($o->optionName === 'Kalın yazı', "$label: optionName " . show($o->optionName));
    check_close("$label: price", $o->price, 0.01);
    check($o->paid === false, "$label: paid " . show($o->paid));

    // calculateOptionsPrice: the unpaid options of two products, and a voucher for them.
    $label = 'calculateOptionsPrice';
    $r = call($label, $option, 'calculateOptionsPrice',
        $signer->fresh() + ['productIds' => ['item' => [587300354, 587300355]], 'lang' => 'en']);
    $n++;
    check_success($label, $r);
    check_close("$label: price", $r->price, 0.02);
    check($r->payRequired === true, "$label: payRequired " . show($r->payRequired));
    check($r->productCount === 2, "$label: productCount " . show($r->productCount));
    check_type("$label: paymentVoucher", $r->paymentVoucher, 'string');
    check(strpos($r->paymentVoucher, 'FT-') === 0, "$label: paymentVoucher " . show($r->paymentVoucher));
    $voucher = $r->paymentVoucher;

    // payPrice: pay the voucher; the card number never comes back whole.
    $card = ['paymentVoucher' => $voucher, 'ccOwnerName' => 'Ayşe', 'ccOwnerSurname' => 'Yılmaz',
        'ccNumber' => '4111111111111111', 'cvv' => '123', 'expireMonth' => '12', 'expireYear' => '2099'];
    $label = 'payPrice';
    $r = call($label, $option, 'payPrice', $signer->fresh() + $card + ['lang' => 'en']);
    $n++;
    check_success($label, $r);
    check($r->paymentVoucher === $voucher, "$label: paymentVoucher " . show($r->paymentVoucher));
    check_close("$label: price", $r->price, 0.02);
    check_type("$label: paymentId", $r->paymentId, 'string');
    check(!isset($r->cardNumber) || substr($r->cardNumber, -4) === '1111', "$label: cardNumber " . show($r->cardNumber));
    check(strpos($option->__getLastResponse(), '4111111111111111') === false, "$label: the card number came back");

    // payPrice again: a voucher is paid once; a business failure, not a fault.
    $label = 'payPrice (again)';
    $r = call($label, $option, 'payPrice', $signer->fresh() + $card + ['lang' => 'en']);
    $n++;
    check_failure($label, $r, 'VOUCHER_ALREADY_PAID');

    // Payment service, signed with a time long past, in Turkish.
    $label = 'Payment calculateOptionsPrice (expired time)';
    $r = call($label, $payment, 'calculateOptionsPrice',
        $signer->sign(EXPIRED_TIME) + ['productIds' => ['item' => [587300354, 587300355]], 'lang' => 'tr']);
    $n++;
    check_failure($label, $r, 'TIME_EXPIRED');
    check(strpos($r->error->message, 'çok eski') !== false, "$label: message " . show($r->error->message));
    check(stripos($payment->__getLastRequestHeaders(), 'Content-Encoding: gzip') !== false,
        "$label: the request was not compressed: " . $payment->__getLastRequestHeaders());

    // SOAP 1.2: an already paid product.
    $label = 'SOAP 1.2 calculateOptionsPrice';
    $r = call($label, $option12, 'calculateOptionsPrice',
        $signer->fresh() + ['productIds' => ['item' => [587300356]], 'lang' => 'en']);
    $n++;
    check_success($label, $r);
    check($r->payRequired === false, "$label: payRequired " . show($r->payRequired));
    check(strpos($option12->__getLastResponseHeaders(), 'application/soap+xml') !== false,
        "$label: not a SOAP 1.2 answer: " . $option12->__getLastResponseHeaders());

    // A product the backend does not know: the backend's 404 as the service's business
    // failure, with its code and the text in the caller's language.
    $label = 'calculateOptionsPrice (unknown product)';
    $r = call($label, $option, 'calculateOptionsPrice',
        $signer->fresh() + ['productIds' => ['item' => [12]], 'lang' => 'en']);
    $n++;
    check_failure($label, $r, 'PRODUCT_NOT_FOUND');
    check_type("$label: error.message", $r->error->message, 'string');

    // An operation the service does not have (SoapClient without the WSDL, as older code
    // calls it): a SoapFault with the Client code that names the operation, over HTTP 500.
    $label = 'an operation the service does not have';
    $n++;
    $plain = new SoapClient(null, ['location' => "$base/listingapi/ws/IndividualProductOptionService",
        'uri' => 'https://product.option.individual.ws.listingapi.gg.com', 'login' => ROLE_USER,
        'password' => ROLE_PASSWORD, 'exceptions' => true, 'trace' => true]);
    try {
        $r = $plain->__soapCall('cancelEverything', [new SoapParam('en', 'lang')]);
        throw new Check("$label: answered instead of a fault: " . show($r));
    } catch (SoapFault $f) {
        check(preg_match('/(^|:)Client$/', $f->faultcode) === 1, "$label: faultcode " . show($f->faultcode) . ': ' . $f->getMessage());
        check(strpos($f->getMessage(), 'cancelEverything') !== false, "$label: the fault does not name the operation: " . $f->getMessage());
        check(strpos($plain->__getLastResponseHeaders(), ' 500 ') !== false,
            "$label: not HTTP 500: " . $plain->__getLastResponseHeaders());
    }

    // Wrong password: HTTP 401, which SoapClient reports as a fault.
    $label = 'wrong password';
    $n++;
    $bad = new SoapClient(null, ['location' => "$base/listingapi/ws/IndividualProductOptionService",
        'uri' => 'https://product.option.individual.ws.listingapi.gg.com', 'login' => ROLE_USER,
        'password' => 'not-the-password', 'exceptions' => true]);
    try {
        $bad->__soapCall('getOptionFeaturesInfo', [], ['soapaction' => '']);
        throw new Check("$label: answered");
    } catch (SoapFault $f) {
        check(stripos($f->getMessage(), 'unauthorized') !== false || strpos($f->getMessage(), '401') !== false
            || stripos($f->getMessage(), 'auth') !== false, "$label: " . $f->faultcode . ': ' . $f->getMessage());
    }
    return "php soapclient: $n calls OK";
}

function run_large($base, $n) {
    $option = client($base, 'IndividualProductOptionService');
    $signer = new Signer();
    $label = 'getOptionFeaturesInfo (large)';
    $r = call($label, $option, 'getOptionFeaturesInfo',
        $signer->fresh() + ['productIds' => ['item' => [587300354]], 'lang' => 'en']);
    check_success($label, $r);
    check(stripos($option->__getLastResponseHeaders(), 'transfer-encoding: chunked') !== false,
        "$label: the answer was not sent while it was written: " . $option->__getLastResponseHeaders());
    check($r->productCount === $n, "$label: productCount " . show($r->productCount));
    $products = products_of($label, $r);
    check(count($products) === $n, "$label: " . count($products) . " products, expected $n");
    foreach ($products as $i => $p) {
        check($p->productId === 1000 + $i, "$label: product $i has id " . show($p->productId));
        check($p->productTitle === "Ürün $i <&>", "$label: product $i: " . show($p->productTitle));
        $options = options_of($label, $p);
        check(count($options) === 2, "$label: product $i: " . show($options));
        check_close("$label: product $i price", $options[1]->price, 12.5);
    }
    // The next answer breaks deep in its list, after the bridge began sending it: SoapClient
    // must fail on it rather than take the products before the break for the whole answer.
    $label = 'getOptionFeaturesInfo (large, broken late)';
    try {
        $r = $option->__soapCall('getOptionFeaturesInfo',
            [$signer->fresh() + ['productIds' => ['item' => [587300354]], 'lang' => 'en']]);
        throw new Check("$label: SoapClient took a broken answer for a whole one: " . substr(show($r), 0, 300));
    } catch (SoapFault $f) {
        // ext-soap: "Error Fetching http body, No Content-Length, connection closed or chunked data"
        // or a parse error of the truncated XML; either way no result.
    }
    return "php large answer: $n products OK";
}

function main($argv) {
    if (count($argv) !== 2 && !(count($argv) === 4 && $argv[2] === 'large')) {
        fwrite(STDERR, "usage: {$argv[0]} BASE_URL [large N]\n");
        return 2;
    }
    $base = rtrim($argv[1], '/');
    try {
        echo (count($argv) === 4 ? run_large($base, (int) $argv[3]) : run_calls($base)), "\n";
        return 0;
    } catch (Check $e) {
        fwrite(STDERR, 'php interop FAILED: ' . $e->getMessage() . "\n");
    } catch (Throwable $e) {
        fwrite(STDERR, 'php interop FAILED with ' . get_class($e) . ': ' . $e->getMessage() . "\n" . $e->getTraceAsString() . "\n");
    }
    return 1;
}

exit(main($argv));
