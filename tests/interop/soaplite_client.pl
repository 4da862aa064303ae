#!/usr/bin/perl
# Interop test: drive soapbridge with Perl's SOAP::Lite as Perl integrations call it: no WSDL,
# the operation and its parameters built with SOAP::Data, SOAP::Lite's own defaults (an
# encodingStyle on the envelope, an xsi:type on every scalar), HTTP Basic in the proxy URL.
#
#     perl tests/interop/soaplite_client.pl http://127.0.0.1:8080
#     perl tests/interop/soaplite_client.pl http://127.0.0.1:8080 large N
#
# The first form expects a bridge started from demo/soapbridge.toml with a FRESH bundled
# reference backend (a voucher is paid): the answers must carry the values the WSDL describes,
# a business failure must come back as ackCode "failure" with its code, an operation the service
# lacks as a Client fault naming it, and a wrong password as HTTP 401.
# The second form expects a bridge whose product-options backend answers getOptionFeaturesInfo
# with N generated products (as tests/interop/zeep_large.py describes), sent while it is written
# (chunked), and then with such an answer broken off near its end: the first must come back
# whole, the second must not be taken for an answer.
# Prints "soap-lite interop: N calls OK" (or "soap-lite large answer: N products OK").
use strict;
use warnings;
use utf8;
use Digest::MD5 qw(md5_hex);
use Time::HiRes ();
use SOAP::Lite;

binmode STDOUT, ':encoding(UTF-8)';
binmode STDERR, ':encoding(UTF-8)';

my $NS = 'https://product.option.individual.ws.listingapi.gg.com';
my $API_KEY = 'NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss';
my $SECRET = 'demo-secret-change-me';
my $EXPIRED_TIME = 1597746714261;
my $last = 0;

sub check { my ($ok, $what) = @_; die "CHECK: $what\n" unless $ok; }

sub signed {
    my ($t) = @_;
    unless (defined $t) {
        $t = int(Time::HiRes::time() * 1000);
        $t = $last + 1 if $t <= $last;
        $last = $t;
    }
    return (SOAP::Data->name(apiKey => $API_KEY),
        SOAP::Data->name(sign => md5_hex($API_KEY . $SECRET . $t)), SOAP::Data->name(time => $t));
}

sub ids { SOAP::Data->name(productIds => \SOAP::Data->value(map { SOAP::Data->name(item => $_) } @_)) }

sub lang { SOAP::Data->name(lang => $_[0]) }

sub client {
    my ($base, $password) = @_;
    $base =~ s{^http://}{http://demo:$password\@};
    return SOAP::Lite->proxy("$base/listingapi/ws/IndividualProductOptionService", timeout => 30)
        ->default_ns($NS)->on_action(sub { '' });
}

# A call whose fault fails the check; gives the SOM.
sub call {
    my ($label, $soap, $op, @args) = @_;
    my $som = $soap->call($op, @args);
    check(ref $som, "$label: no answer: " . $soap->transport->status);
    check(!$som->fault, "$label: fault " . ($som->fault ? $som->faultcode . ': ' . $som->faultstring : ''));
    return $som;
}

sub success {
    my ($label, $som) = @_;
    my $r = $som->result;
    check($r->{ackCode} eq 'success', "$label: ackCode $r->{ackCode}");
    check(!exists $r->{error}, "$label: success with an error element");
    return $r;
}

sub failure {
    my ($label, $som, $code) = @_;
    my $r = $som->result;
    check($r->{ackCode} eq 'failure', "$label: ackCode $r->{ackCode}");
    check($r->{error}{errorCode} eq $code, "$label: errorCode $r->{error}{errorCode}, expected $code");
    return $r;
}

sub run_calls {
    my ($base) = @_;
    my $soap = client($base, 'demo-role-pass');
    my $n = 0;

    my $label = 'getOptionFeaturesInfo';
    my $som = call($label, $soap, 'getOptionFeaturesInfo', signed(), ids(587300354), lang('en'));
    $n++;
    my $r = success($label, $som);
    check($r->{productCount} == 1, "$label: productCount $r->{productCount}");
    check($som->valueof('//products/product/productId') == 587300354, "$label: productId");
    check($som->valueof('//products/product/productTitle') eq 'Kırmızı Deri Cüzdan',
        "$label: productTitle " . $som->valueof('//products/product/productTitle'));
    my $o = $som->valueof('//products/product/optionFeatures/optionFeature');
    check($o->{optionName} eq 'Kalın yazı' && $o->{duration} == 7 && $o->{price} == 0.01 && $o->{paid} eq 'false',
        "$label: option " . join(',', map { "$_=" . ($o->{$_} // 'undef') } sort keys %$o));

    $label = 'calculateOptionsPrice';
    $som = call($label, $soap, 'calculateOptionsPrice', signed(), ids(587300354, 587300355), lang('en'));
    $n++;
    $r = success($label, $som);
    check($r->{price} == 0.02 && $r->{payRequired} eq 'true' && $r->{productCount} == 2,
        "$label: price $r->{price}, payRequired $r->{payRequired}, productCount $r->{productCount}");
    my $voucher = $r->{paymentVoucher};
    check($voucher =~ /^FT-/, "$label: paymentVoucher $voucher");

    my @card = (SOAP::Data->name(paymentVoucher => $voucher), SOAP::Data->name(ccOwnerName => 'Ayşe'),
        SOAP::Data->name(ccOwnerSurname => 'Yılmaz'), SOAP::Data->name(ccNumber => '4111111111111111'),
        SOAP::Data->name(cvv => '123'), SOAP::Data->name(expireMonth => '12'),
        SOAP::Data->name(expireYear => '2099'));
    $label = 'payPrice';
    $som = call($label, $soap, 'payPrice', signed(), @card, lang('en'));
    $n++;
    $r = success($label, $som);
    check($r->{paymentVoucher} eq $voucher && $r->{price} == 0.02, "$label: $r->{paymentVoucher} $r->{price}");

    $label = 'payPrice (again)';
    $som = call($label, $soap, 'payPrice', signed(), @card, lang('en'));
    $n++;
    failure($label, $som, 'VOUCHER_ALREADY_PAID');

    $label = 'calculateOptionsPrice (expired time)';
    $som = call($label, $soap, 'calculateOptionsPrice', signed($EXPIRED_TIME), ids(587300354), lang('tr'));
    $n++;
    $r = failure($label, $som, 'TIME_EXPIRED');
    check($r->{error}{message} =~ /çok eski/, "$label: message $r->{error}{message}");

    $label = 'an operation the service does not have';
    $som = $soap->call('cancelEverything', lang('en'));
    $n++;
    check(ref $som && $som->fault, "$label: no fault");
    check($som->faultcode =~ /(^|:)Client$/, "$label: faultcode " . $som->faultcode);
    check($som->faultstring =~ /cancelEverything/, "$label: faultstring " . $som->faultstring);
    check($soap->transport->code == 500, "$label: HTTP " . $soap->transport->status);

    $label = 'wrong password';
    my $bad = client($base, 'not-the-password');
    $som = eval { $bad->call('getOptionFeaturesInfo', signed(), ids(587300354), lang('en')) };
    $n++;
    check($bad->transport->code == 401, "$label: HTTP " . $bad->transport->status);
    return "soap-lite interop: $n calls OK";
}

sub run_large {
    my ($base, $n) = @_;
    my $soap = client($base, 'demo-role-pass');
    my $label = 'getOptionFeaturesInfo (large)';
    my $som = call($label, $soap, 'getOptionFeaturesInfo', signed(), ids(587300354), lang('en'));
    my $r = success($label, $som);
    my $te = $soap->transport->http_response->header('Transfer-Encoding') // '';
    check($te =~ /chunked/i, "$label: not sent while it was written (Transfer-Encoding '$te')");
    check($r->{productCount} == $n, "$label: productCount $r->{productCount}");
    my @ids = $som->valueof('//products/product/productId');
    my @titles = $som->valueof('//products/product/productTitle');
    check(@ids == $n, "$label: " . scalar(@ids) . " products, expected $n");
    for my $i (0 .. $n - 1) {
        check($ids[$i] == 1000 + $i, "$label: product $i has id $ids[$i]");
        check($titles[$i] eq "Ürün $i <&>", "$label: product $i: $titles[$i]");
    }
    # Broken off after it began: LWP marks the response as cut short, and SOAP::Lite must not
    # hand back the products before the break as a result.
    $label = 'getOptionFeaturesInfo (large, broken late)';
    $som = eval { $soap->call('getOptionFeaturesInfo', signed(), ids(587300354), lang('en')) };
    my $took = ref $som && !$som->fault && defined $som->result && ref $som->result eq 'HASH'
        && ($som->result->{ackCode} // '') eq 'success';
    check(!$took, "$label: SOAP::Lite took a broken answer for a whole one");
    return "soap-lite large answer: $n products OK";
}

my ($base, $mode, $count) = @ARGV;
if (!defined $base || (defined $mode && ($mode ne 'large' || !defined $count))) {
    print STDERR "usage: $0 BASE_URL [large N]\n";
    exit 2;
}
$base =~ s{/+$}{};
my $out = eval { defined $mode ? run_large($base, $count) : run_calls($base) };
if (!defined $out) {
    print STDERR "soap-lite interop FAILED: $@";
    exit 1;
}
print "$out\n";
exit 0;
