// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title AutoPool
/// @notice Custody and final settlement for the Autopool referral plan on BNB Smart Chain.
///
/// Every wei that enters arrives through a backend-signed `register` or `retopup`; every wei
/// that leaves goes out through a backend-signed `executeBatchPayouts` or through `claim` of an
/// amount a signed batch already deferred. There is no other path for funds, in or out: no
/// `receive`/`fallback`, no owner withdraw, no rescue, no emergency drain. The owner (a
/// multisig) can only rotate the signer, set the rolling 24-hour outflow cap, set the guardian,
/// pause/unpause and hand over ownership; the cap bounds what a stolen signer key can take.
///
/// Registration always places into level 1: `slot` is the level-1 slot (breadth-first heap
/// numbering, root 0). Levels >= 2 are reached only by auto-progression, which is internal to
/// the ledger and moves no funds on chain.
///
/// Design notes (cap algorithm, stipend, pause semantics): docs/contract.md.
contract AutoPool {
    // ---------------------------------------------------------------- payload types (EIP-712)

    struct Registration {
        address user;
        address referrer;
        uint256 slot;
        uint256 amount;
        bytes32 planHash;
        uint256 nonce;
        uint256 deadline;
    }

    struct Retopup {
        address user;
        uint256 amount;
        bytes32 planHash;
        uint256 nonce;
        uint256 deadline;
    }

    struct Payout {
        address recipient;
        uint256 amount;
    }

    struct PayoutBatch {
        uint256 batchId;
        Payout[] payouts;
        uint256 nonce;
        uint256 deadline;
    }

    // Type strings equal backend/chain/typed_data.py byte for byte (tests/contracts check it).
    bytes32 public constant REGISTRATION_TYPEHASH = keccak256(
        "Registration(address user,address referrer,uint256 slot,uint256 amount,bytes32 planHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant RETOPUP_TYPEHASH =
        keccak256("Retopup(address user,uint256 amount,bytes32 planHash,uint256 nonce,uint256 deadline)");
    bytes32 public constant PAYOUT_TYPEHASH = keccak256("Payout(address recipient,uint256 amount)");
    bytes32 public constant PAYOUT_BATCH_TYPEHASH = keccak256(
        "PayoutBatch(uint256 batchId,Payout[] payouts,uint256 nonce,uint256 deadline)Payout(address recipient,uint256 amount)"
    );

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("AutoPool");
    bytes32 private constant _VERSION_HASH = keccak256("1");

    /// secp256k1n / 2: signatures with a larger `s` are the malleated twin of a low-s one.
    uint256 private constant _HALF_CURVE_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ---------------------------------------------------------------- payout parameters

    /// @notice The `gas:` given to each recipient's call. With a nonzero value the EVM adds its
    /// own 2,300 stipend, so a recipient contract runs with at most 12,300 gas: enough for a
    /// proxy wallet's receive (cold SLOAD + cold DELEGATECALL + an event), too little to do
    /// anything expensive, and it bounds what a gas-burning recipient costs the batch.
    uint256 public constant PAYOUT_GAS_STIPEND = 10_000;

    /// Gas that must remain before each recipient call so the recipient really gets the full
    /// stipend: CALL's own charge in the worst case (cold account 2,600 + value 9,000 + new
    /// account 25,000) plus stipend * 64/63 (EIP-150 keeps 1/64 back) plus a margin. Without
    /// this, a submitter could pick a gas limit that starves one recipient and forces its payout
    /// into `claimable`.
    /// = 2_600 + 9_000 + 25_000 + (PAYOUT_GAS_STIPEND * 64) / 63 + 300, written out because
    /// inline assembly reads only literal constants.
    uint256 private constant _MIN_GAS_PER_PAYOUT = 47_058;

    /// @notice The outflow cap covers any 24-hour window. Outflows are kept in hourly buckets;
    /// a batch is checked against the sum of the current hour and the previous 24 hours
    /// (25 buckets), which covers every 24-hour window ending now, so it never lets more than
    /// the cap out in any 24 hours (an outflow leaves the count 24 to 25 hours after it was made).
    uint256 public constant OUTFLOW_BUCKET_SECONDS = 1 hours;
    uint256 private constant _WINDOW_BUCKETS = 25;
    uint256 private constant _RING_WORDS = 13; // 26 buckets of 128 bits, two per storage word
    uint256 private constant _RING_BUCKETS = 26;
    uint256 private constant _BUCKET_MASK = (1 << 128) - 1;
    uint256 private constant _AMOUNT_MASK = (1 << 96) - 1; // bucket = hour tag (32 bits) << 96 | amount (96 bits)

    // ---------------------------------------------------------------- state

    // `_signer` and `_paused` share one storage word: every signed path reads both.
    address private _signer;
    bool private _paused;

    /// @notice The admin (a multisig in production). Cannot move funds.
    address public owner;
    /// @notice Set by `transferOwnership`, becomes owner on `acceptOwnership`.
    address public pendingOwner;
    /// @notice May pause (the global kill switch); cannot unpause.
    address public guardian;
    /// @notice Rolling 24-hour outflow limit in wei.
    uint256 public outflowCap;
    /// @notice Sum of `claimable`: BNB that a signed batch already assigned and that no later
    /// batch may spend.
    uint256 public totalClaimable;

    /// @notice Unordered nonces, one bitmap for all payload types: word = nonce >> 8, bit = nonce & 255.
    mapping(uint256 word => uint256 bits) public nonceBitmap;
    /// @notice Deferred payouts waiting for `claim`.
    mapping(address account => uint256 amount) public claimable;

    mapping(uint256 word => uint256 bits) private _batchBitmap;
    uint256[_RING_WORDS] private _outflowRing;

    bool private transient _entered;

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    // ---------------------------------------------------------------- events

    /// `slot` is the level-1 slot; registration always enters level 1.
    event RegistrationAccepted(
        address indexed user, address indexed referrer, uint256 indexed slot, uint256 amount, bytes32 planHash, uint256 nonce
    );
    event RetopupCompleted(address indexed user, uint256 amount, bytes32 planHash, uint256 nonce);
    event PayoutExecuted(uint256 indexed batchId, address indexed recipient, uint256 amount);
    event PayoutDeferred(uint256 indexed batchId, address indexed recipient, uint256 amount);
    event BatchExecuted(uint256 indexed batchId, uint256 paidTotal, uint256 deferredTotal, uint256 recipientCount);
    event Claimed(address indexed account, uint256 amount);
    /// Emitted by `claimTo` beside `Claimed`, naming where the BNB went.
    event ClaimedTo(address indexed account, address indexed to, uint256 amount);

    event SignerRotated(address indexed previous, address indexed next);
    event OutflowCapSet(uint256 cap);
    event GuardianSet(address indexed guardian);
    event Paused(address account);
    event Unpaused(address account);
    event OwnershipTransferStarted(address indexed previous, address indexed next);
    event OwnershipTransferred(address indexed previous, address indexed next);

    // ---------------------------------------------------------------- errors

    error ContractPaused();
    error ContractNotPaused();
    error ReentrantCall();
    error NotOwner();
    error NotGuardianOrOwner();
    error NotPendingOwner();
    error ZeroAddress();
    error SenderNotUser(address sender, address user);
    error WrongValue(uint256 sent, uint256 expected);
    error DeadlineExpired(uint256 deadline, uint256 timestamp);
    error NonceAlreadyUsed(uint256 nonce);
    error InvalidSignatureLength(uint256 length);
    error SignatureHighS();
    error InvalidSignatureV(uint8 v);
    error InvalidSignature();
    error UnauthorizedSigner(address recovered);
    error BatchAlreadyExecuted(uint256 batchId);
    error EmptyBatch();
    error InvalidRecipient(uint256 index, address recipient);
    error AmountOverflow();
    error OutflowCapExceeded(uint256 requested, uint256 available);
    error InsufficientBalance(uint256 balance, uint256 required);
    error InsufficientGasForPayout(uint256 index);
    error NothingToClaim();
    error ClaimTransferFailed();

    // ---------------------------------------------------------------- modifiers

    /// One guard (transient storage) for every state-changing entry point: while a payout or a
    /// claim is calling out, nothing in this contract can be re-entered.
    modifier nonReentrant() {
        if (_entered) revert ReentrantCall();
        _entered = true;
        _;
        _entered = false;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    // ---------------------------------------------------------------- construction

    constructor(address initialOwner, address initialSigner, address initialGuardian, uint256 initialOutflowCap) {
        if (initialOwner == address(0) || initialSigner == address(0)) revert ZeroAddress();
        owner = initialOwner;
        _signer = initialSigner;
        guardian = initialGuardian;
        outflowCap = initialOutflowCap;
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        // Admin state is rebuildable from events alone, from the first block.
        emit OwnershipTransferred(address(0), initialOwner);
        emit SignerRotated(address(0), initialSigner);
        emit GuardianSet(initialGuardian);
        emit OutflowCapSet(initialOutflowCap);
    }

    // ---------------------------------------------------------------- inflows

    /// @notice Pay the entry for a backend-signed level-1 placement. The payload executes at
    /// most once (its nonce), only by its user, only with exactly its amount, only until its
    /// deadline, only while not paused.
    function register(Registration calldata p, bytes calldata signature) external payable nonReentrant {
        // "Already done" outranks every other error, so a retry learns that first.
        _useNonce(p.nonce);
        _checkInflow(p.user, p.amount, p.deadline);
        _verify(
            keccak256(
                abi.encode(REGISTRATION_TYPEHASH, p.user, p.referrer, p.slot, p.amount, p.planHash, p.nonce, p.deadline)
            ),
            signature
        );
        emit RegistrationAccepted(p.user, p.referrer, p.slot, p.amount, p.planHash, p.nonce);
    }

    /// @notice Pay a backend-signed retopup; same guarantees as `register`.
    function retopup(Retopup calldata p, bytes calldata signature) external payable nonReentrant {
        _useNonce(p.nonce);
        _checkInflow(p.user, p.amount, p.deadline);
        _verify(keccak256(abi.encode(RETOPUP_TYPEHASH, p.user, p.amount, p.planHash, p.nonce, p.deadline)), signature);
        emit RetopupCompleted(p.user, p.amount, p.planHash, p.nonce);
    }

    // ---------------------------------------------------------------- outflows

    /// @notice Execute a backend-signed payout batch. Anyone may submit it; the signature is the
    /// authority. A batch id executes at most once, ever; its total counts against the rolling
    /// 24-hour outflow cap. Each recipient is called with a bounded gas stipend; a recipient
    /// that reverts or runs out of gas does not revert the batch: its amount becomes claimable.
    function executeBatchPayouts(PayoutBatch calldata batch, bytes calldata signature) external nonReentrant {
        uint256 batchId = batch.batchId;
        // Marked first: a resubmitted batch that already executed gets `BatchAlreadyExecuted`
        // whatever else holds now (past deadline, paused), so the settlement worker can never
        // mistake an executed batch for an expired one. Any later revert undoes the mark.
        _markBatch(batchId);
        if (_paused) revert ContractPaused();
        if (block.timestamp > batch.deadline) revert DeadlineExpired(batch.deadline, block.timestamp);
        Payout[] calldata payouts = batch.payouts;
        uint256 count = payouts.length;
        if (count == 0) revert EmptyBatch();
        _useNonce(batch.nonce);
        (bytes32 payoutsHash, uint256 total) = _hashPayouts(payouts);
        _verify(keccak256(abi.encode(PAYOUT_BATCH_TYPEHASH, batchId, payoutsHash, batch.nonce, batch.deadline)), signature);
        _recordOutflow(total);

        // Deferred amounts already owed are not spendable by a new batch.
        uint256 reserved = totalClaimable;
        if (address(this).balance < reserved + total) revert InsufficientBalance(address(this).balance, reserved + total);

        uint256 deferredTotal = _pay(batchId, payouts);
        if (deferredTotal != 0) totalClaimable = reserved + deferredTotal;
        emit BatchExecuted(batchId, total - deferredTotal, deferredTotal, count);
    }

    /// @notice Pay the caller everything deferred to it. Forwards all gas (the caller pays for
    /// it). Works while paused: see docs/contract.md.
    function claim() external nonReentrant {
        _claim(payable(msg.sender));
    }

    /// @notice Like `claim`, but sends the caller's claimable to `to`: for an account that
    /// cannot receive BNB at all (the reason its payout was deferred). Emits `Claimed` (the
    /// ledger effect) and `ClaimedTo`.
    function claimTo(address payable to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = _claim(to);
        emit ClaimedTo(msg.sender, to, amount);
    }

    // ---------------------------------------------------------------- admin (no funds)

    function setSigner(address next) external onlyOwner nonReentrant {
        if (next == address(0)) revert ZeroAddress();
        emit SignerRotated(_signer, next);
        _signer = next;
    }

    function setOutflowCap(uint256 cap) external onlyOwner nonReentrant {
        outflowCap = cap;
        emit OutflowCapSet(cap);
    }

    /// @notice `address(0)` leaves pausing to the owner alone.
    function setGuardian(address next) external onlyOwner nonReentrant {
        guardian = next;
        emit GuardianSet(next);
    }

    function pause() external nonReentrant {
        if (msg.sender != guardian && msg.sender != owner) revert NotGuardianOrOwner();
        if (_paused) revert ContractPaused();
        _paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyOwner nonReentrant {
        if (!_paused) revert ContractNotPaused();
        _paused = false;
        emit Unpaused(msg.sender);
    }

    /// @notice Step one of two; `address(0)` cancels a pending transfer. There is no renounce.
    function transferOwnership(address next) external onlyOwner nonReentrant {
        pendingOwner = next;
        emit OwnershipTransferStarted(owner, next);
    }

    function acceptOwnership() external nonReentrant {
        if (msg.sender != pendingOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    // ---------------------------------------------------------------- views

    function signer() external view returns (address) {
        return _signer;
    }

    function paused() external view returns (bool) {
        return _paused;
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    function isNonceUsed(uint256 nonce) external view returns (bool) {
        return nonceBitmap[nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    function batchExecuted(uint256 batchId) external view returns (bool) {
        return _batchBitmap[batchId >> 8] & (1 << (batchId & 0xff)) != 0;
    }

    /// @notice What may still go out now under the rolling 24-hour cap.
    function availableOutflow() external view returns (uint256) {
        uint256 used = _outflowInWindow(block.timestamp / OUTFLOW_BUCKET_SECONDS);
        uint256 cap = outflowCap;
        return cap > used ? cap - used : 0;
    }

    /// @notice The EIP-712 digest the signer signs for `p` (for cross-checking signers).
    function registrationDigest(Registration calldata p) external view returns (bytes32) {
        return _digest(
            keccak256(
                abi.encode(REGISTRATION_TYPEHASH, p.user, p.referrer, p.slot, p.amount, p.planHash, p.nonce, p.deadline)
            )
        );
    }

    function retopupDigest(Retopup calldata p) external view returns (bytes32) {
        return _digest(keccak256(abi.encode(RETOPUP_TYPEHASH, p.user, p.amount, p.planHash, p.nonce, p.deadline)));
    }

    function payoutBatchDigest(PayoutBatch calldata batch) external view returns (bytes32) {
        (bytes32 payoutsHash,) = _hashPayouts(batch.payouts);
        return _digest(
            keccak256(abi.encode(PAYOUT_BATCH_TYPEHASH, batch.batchId, payoutsHash, batch.nonce, batch.deadline))
        );
    }

    // ---------------------------------------------------------------- internals

    function _checkInflow(address user, uint256 amount, uint256 deadline) private view {
        if (_paused) revert ContractPaused();
        if (msg.sender != user) revert SenderNotUser(msg.sender, user);
        if (msg.value != amount) revert WrongValue(msg.value, amount);
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
    }

    function _useNonce(uint256 nonce) private {
        uint256 word = nonce >> 8;
        uint256 bit = 1 << (nonce & 0xff);
        uint256 bits = nonceBitmap[word];
        if (bits & bit != 0) revert NonceAlreadyUsed(nonce);
        nonceBitmap[word] = bits | bit;
    }

    function _markBatch(uint256 batchId) private {
        uint256 word = batchId >> 8;
        uint256 bit = 1 << (batchId & 0xff);
        uint256 bits = _batchBitmap[word];
        if (bits & bit != 0) revert BatchAlreadyExecuted(batchId);
        _batchBitmap[word] = bits | bit;
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    function _digest(bytes32 structHash) private view returns (bytes32 digest) {
        bytes32 domainSeparator = DOMAIN_SEPARATOR();
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, hex"1901")
            mstore(add(p, 0x02), domainSeparator)
            mstore(add(p, 0x22), structHash)
            digest := keccak256(p, 0x42)
        }
    }

    /// Accepts exactly 65 bytes (r, s, v) with v in {27, 28} and low s, recovering the signer.
    function _verify(bytes32 structHash, bytes calldata signature) private view {
        if (signature.length != 65) revert InvalidSignatureLength(signature.length);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 0x20))
            v := byte(0, calldataload(add(signature.offset, 0x40)))
        }
        if (uint256(s) > _HALF_CURVE_ORDER) revert SignatureHighS();
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        address recovered = ecrecover(_digest(structHash), v, r, s);
        if (recovered == address(0)) revert InvalidSignature();
        if (recovered != _signer) revert UnauthorizedSigner(recovered);
    }

    /// EIP-712 hash of `Payout[]` (keccak of the concatenated hashStruct of each element), the
    /// batch total, and recipient validation: no zero address, no dirty upper bits, not this
    /// contract (it cannot receive, so the amount would be claimable by nobody).
    function _hashPayouts(Payout[] calldata payouts) private view returns (bytes32 payoutsHash, uint256 total) {
        bytes32 typehash = PAYOUT_TYPEHASH;
        bytes4 invalidRecipient = InvalidRecipient.selector;
        bytes4 amountOverflow = AmountOverflow.selector;
        assembly ("memory-safe") {
            let n := payouts.length
            let hashes := mload(0x40) // temporary: n words of element hashes, then a 96-byte buffer
            let buf := add(hashes, shl(5, n))
            mstore(buf, typehash)
            let src := payouts.offset
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                let recipient := calldataload(src)
                let amount := calldataload(add(src, 0x20))
                if or(or(iszero(recipient), shr(160, recipient)), eq(recipient, address())) {
                    let e := add(buf, 0x60)
                    mstore(e, invalidRecipient)
                    mstore(add(e, 0x04), i)
                    mstore(add(e, 0x24), recipient)
                    revert(e, 0x44)
                }
                total := add(total, amount)
                if lt(total, amount) {
                    mstore(0, amountOverflow)
                    revert(0, 0x04)
                }
                mstore(add(buf, 0x20), recipient)
                mstore(add(buf, 0x40), amount)
                mstore(add(hashes, shl(5, i)), keccak256(buf, 0x60))
                src := add(src, 0x40)
            }
            payoutsHash := keccak256(hashes, shl(5, n))
        }
    }

    /// The push loop. Returns the deferred total; every amount is either paid
    /// (`PayoutExecuted`) or credited to `claimable` (`PayoutDeferred`).
    function _pay(uint256 batchId, Payout[] calldata payouts) private returns (uint256 deferredTotal) {
        bytes32 paidTopic = PayoutExecuted.selector;
        bytes32 deferredTopic = PayoutDeferred.selector;
        bytes4 lowGas = InsufficientGasForPayout.selector;
        assembly ("memory-safe") {
            let src := payouts.offset
            let end := add(src, shl(6, payouts.length))
            for {} lt(src, end) {} {
                if lt(gas(), _MIN_GAS_PER_PAYOUT) {
                    mstore(0, lowGas)
                    mstore(0x04, shr(6, sub(src, payouts.offset)))
                    revert(0, 0x24)
                }
                let recipient := calldataload(src)
                let amount := calldataload(add(src, 0x20))
                // No return data is copied: a recipient cannot make the batch pay for a return bomb.
                switch call(PAYOUT_GAS_STIPEND, recipient, amount, 0, 0, 0, 0)
                case 0 {
                    mstore(0, recipient)
                    mstore(0x20, claimable.slot)
                    let slot := keccak256(0, 0x40)
                    sstore(slot, add(sload(slot), amount))
                    deferredTotal := add(deferredTotal, amount)
                    mstore(0, amount)
                    log3(0, 0x20, deferredTopic, batchId, recipient)
                }
                default {
                    mstore(0, amount)
                    log3(0, 0x20, paidTopic, batchId, recipient)
                }
                src := add(src, 0x40)
            }
        }
    }

    function _claim(address payable to) private returns (uint256 amount) {
        amount = claimable[msg.sender];
        if (amount == 0) revert NothingToClaim();
        claimable[msg.sender] = 0;
        totalClaimable -= amount;
        emit Claimed(msg.sender, amount);
        bool ok;
        assembly ("memory-safe") {
            ok := call(gas(), to, amount, 0, 0, 0, 0)
        }
        if (!ok) revert ClaimTransferFailed();
    }

    /// Checks `total` against the cap over the current hour and the 24 before it, then adds it
    /// to the current hour's bucket. 13 storage reads and one write per batch, whatever the
    /// batch size.
    function _recordOutflow(uint256 total) private {
        uint256 hour = block.timestamp / OUTFLOW_BUCKET_SECONDS;
        uint256 used = _outflowInWindow(hour);
        uint256 cap = outflowCap;
        if (used > cap || total > cap - used) revert OutflowCapExceeded(total, cap > used ? cap - used : 0);

        uint256 index = hour % _RING_BUCKETS;
        uint256 shift = (index & 1) * 128;
        uint256 word = _outflowRing[index >> 1];
        uint256 bucket = (word >> shift) & _BUCKET_MASK;
        uint256 amount = total;
        if (bucket >> 96 == hour & 0xffffffff) amount += bucket & _AMOUNT_MASK;
        if (amount > _AMOUNT_MASK) revert AmountOverflow(); // > 79 billion BNB in one hour
        bucket = ((hour & 0xffffffff) << 96) | amount;
        _outflowRing[index >> 1] = (word & ~(_BUCKET_MASK << shift)) | (bucket << shift);
    }

    function _outflowInWindow(uint256 hour) private view returns (uint256 used) {
        uint256 tagNow = hour & 0xffffffff;
        for (uint256 i; i < _RING_WORDS; ++i) {
            uint256 word = _outflowRing[i];
            used += _bucketInWindow(word & _BUCKET_MASK, tagNow) + _bucketInWindow(word >> 128, tagNow);
        }
    }

    function _bucketInWindow(uint256 bucket, uint256 tagNow) private pure returns (uint256) {
        uint256 tag = bucket >> 96;
        // In the window: the current hour and the 24 before it.
        return (tag <= tagNow && tagNow - tag < _WINDOW_BUCKETS) ? bucket & _AMOUNT_MASK : 0;
    }
}
