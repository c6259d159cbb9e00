// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title AutoPool
/// @notice Custody and final settlement for the Autopool referral plan on BNB Smart Chain.
///
/// Every wei that enters arrives through a backend-signed `register` or `retopup`; every wei
/// that leaves goes out through a backend-signed `executeBatchPayouts` or through `claim` of an
/// amount a signed batch already deferred. There is no other path for funds, in or out: no
/// `receive`/`fallback`, no owner withdraw, no rescue, no emergency drain.
///
/// No single key can take the pool. The signer's batches are bounded by the rolling 24-hour
/// outflow cap. The owner (a multisig) cannot move funds; every change it can make that would
/// let more leave the contract (rotating the signer, raising the cap, replacing the guardian,
/// lifting a pause) is proposed in public, waits `changeDelay`, and the guardian can cancel it
/// meanwhile. Lowering the cap, pausing and cancelling take effect at once.
///
/// Registration always places into level 1: `slot` is the level-1 slot (breadth-first heap
/// numbering, root 0). Levels >= 2 are reached only by auto-progression, which is internal to
/// the ledger and moves no funds on chain.
///
/// Design notes (trust model, delay, cap algorithm, stipend, pause, surplus): docs/contract.md.
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

    // ---------------------------------------------------------------- admin changes

    /// The admin changes that could let more BNB leave the contract, or lift the brake on that.
    /// Each is proposed by the owner, becomes executable `changeDelay` seconds later, and until
    /// it is executed the guardian (or the owner) can cancel it. One of each kind at a time.
    enum Change {
        Signer, // rotate the backend signer: the new key's batches pay
        OutflowCap, // raise the rolling 24-hour outflow cap
        Guardian, // replace or unset the guardian, the key that can cancel the others
        Unpause // lift a pause: the guardian's pause holds at least one delay
    }

    struct PendingChange {
        uint192 value; // the new signer / guardian address, or the new cap; 0 for Unpause
        uint64 executableAt; // 0: nothing pending
    }

    /// @notice `changeDelay` may not be lower than this on BNB Smart Chain mainnet (chain id 56).
    uint256 public constant MIN_MAINNET_CHANGE_DELAY = 48 hours;
    /// @notice Upper bound on `changeDelay` (a typo such as milliseconds must not lock the admin).
    uint256 public constant MAX_CHANGE_DELAY = 30 days;
    uint256 private constant _BSC_MAINNET_CHAIN_ID = 56;

    /// @notice The outflow cap is held in 128 bits: more than all BNB that exists. A larger
    /// value is refused rather than silently truncated.
    uint256 public constant MAX_OUTFLOW_CAP = type(uint128).max;

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
    /// into `claimable`. An EIP-7702-delegated recipient costs at most 2,600 more (its delegate's
    /// code) but is never a new account, so the worst case stands.
    /// = 2_600 + 9_000 + 25_000 + (PAYOUT_GAS_STIPEND * 64) / 63 + 300, written out because
    /// inline assembly reads only literal constants.
    uint256 private constant _MIN_GAS_PER_PAYOUT = 47_058;

    /// @notice The outflow cap covers any 24-hour window. Outflows are kept in hourly buckets;
    /// a batch is checked against the sum of the current hour and the previous 24 hours
    /// (25 buckets), which covers every 24-hour window ending now, so it never lets more than
    /// the cap out in any 24 hours (an outflow leaves the count 24 to 25 hours after it was made).
    uint256 public constant OUTFLOW_BUCKET_SECONDS = 1 hours;
    /// @notice Outflows are counted in gwei, each batch's total rounded up, against the cap
    /// rounded down: never lets out more than the cap in wei would.
    uint256 public constant OUTFLOW_UNIT = 1 gwei;
    /// 25 buckets of 85 bits (hour tag mod 2^24 (24 bits) << 61 | gwei (61 bits: 2.3 billion
    /// BNB)), three per storage word: bucket `hour % 25` in word `index / 3` at bit
    /// `85 * (index % 3)`. The 9th word holds bucket 24 and, from bit 128, the cap in wei, so a
    /// batch reads the cap with the buckets it reads anyway: 9 storage reads per batch.
    uint256 private constant _WINDOW_BUCKETS = 25;
    uint256 private constant _RING_WORDS = 9;
    uint256 private constant _CAP_WORD = 8;
    uint256 private constant _BUCKET_BITS = 85;
    uint256 private constant _BUCKET_MASK = (1 << 85) - 1;
    uint256 private constant _AMOUNT_MASK = (1 << 61) - 1;
    uint256 private constant _TAG_MASK = (1 << 24) - 1;
    uint256 private constant _CAP_MASK = (1 << 128) - 1;
    /// An empty bucket (0 gwei) whose word is not zero: the constructor fills the ring with it
    /// so that no batch ever pays for a 0 -> nonzero storage write.
    uint256 private constant _EMPTY_BUCKET = _TAG_MASK << 61;

    // ---------------------------------------------------------------- state

    // One storage word read by every signed path, loaded once per call as `state`: the signer
    // (bits 0-159), the pause flag (bit 160) and `_free` (bits 168-255), the BNB the events
    // account for that is not reserved for claims (Σ inflows + Σ SurplusDrawn − Σ
    // PayoutExecuted − Σ PayoutDeferred). 88 bits hold more wei than all BNB in existence.
    address private _signer;
    bool private _paused;
    uint88 private _free;
    uint256 private constant _PAUSED_BIT = 1 << 160;
    uint256 private constant _FREE_SHIFT = 168;

    /// @notice The admin (a multisig in production). Cannot move funds; its changes that could
    /// let funds out wait `changeDelay`.
    address public owner;
    /// @notice Set by `transferOwnership`, becomes owner on `acceptOwnership`.
    address public pendingOwner;
    /// @notice May pause and cancel any pending change; cannot propose, execute or unpause.
    address public guardian;
    /// @notice Sum of `claimable`: BNB that a signed batch already assigned and that no later
    /// batch may spend.
    uint256 public totalClaimable;

    /// @notice Unordered nonces, one bitmap for all payload types: word = nonce >> 8, bit = nonce & 255.
    mapping(uint256 word => uint256 bits) public nonceBitmap;
    /// @notice Deferred payouts waiting for `claim`.
    mapping(address account => uint256 amount) public claimable;

    mapping(uint256 word => uint256 bits) private _batchBitmap;
    uint256[_RING_WORDS] private _outflowRing;
    PendingChange[4] private _pending;

    // A whole transient word (not a packed bool), so setting it is one TSTORE.
    uint256 private transient _entered;

    /// @notice Seconds between proposing a change and being able to execute it.
    uint256 public immutable changeDelay;
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
    /// The batch's total exceeded the BNB the events account for (`surplus()` covered the rest).
    event SurplusDrawn(uint256 indexed batchId, uint256 amount);
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
    /// `value`: the new signer or guardian address (as a number), the new cap, or 0 (Unpause).
    event ChangeProposed(Change indexed change, uint256 value, uint256 executableAt);
    event ChangeCancelled(Change indexed change, address indexed by);
    event ChangeExecuted(Change indexed change, uint256 value);
    event ChangeDelaySet(uint256 delay);

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
    error ZeroAmount(uint256 index);
    error DuplicateRecipient(uint256 index, address recipient);
    error AmountOverflow();
    error OutflowCapExceeded(uint256 requested, uint256 available);
    error InsufficientBalance(uint256 balance, uint256 required);
    error InsufficientGasForPayout(uint256 index);
    error NothingToClaim();
    error ClaimTransferFailed();
    error InvalidChangeDelay(uint256 delay);
    error ChangeAlreadyPending(Change change);
    error NoPendingChange(Change change);
    error ChangeNotReady(Change change, uint256 executableAt);
    error CapNotRaised(uint256 cap, uint256 current);
    error CapNotLowered(uint256 cap, uint256 current);
    error CapTooLarge(uint256 cap);

    // ---------------------------------------------------------------- modifiers

    /// One guard (transient storage) for every state-changing entry point: while a payout or a
    /// claim is calling out, nothing in this contract can be re-entered.
    modifier nonReentrant() {
        if (_entered != 0) revert ReentrantCall();
        _entered = 1;
        _;
        _entered = 0;
    }

    /// For `register` and `retopup`, which call out to nothing but the ecrecover precompile, so
    /// nothing can re-enter while they run: they only need to refuse being entered while a
    /// payout or a claim is calling out.
    modifier notEntered() {
        if (_entered != 0) revert ReentrantCall();
        _;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// An unset guardian (`address(0)`) is nobody, not the zero address.
    modifier onlyGuardianOrOwner() {
        if (msg.sender != owner && (msg.sender != guardian || msg.sender == address(0))) revert NotGuardianOrOwner();
        _;
    }

    // ---------------------------------------------------------------- construction

    /// @param initialGuardian `address(0)` leaves pausing and cancelling to the owner alone; the
    /// delay then only makes the owner's changes public in advance (see docs/contract.md).
    /// @param changeDelay_ seconds a proposed change waits: at least 48 hours on BSC mainnet,
    /// at most 30 days anywhere.
    constructor(
        address initialOwner,
        address initialSigner,
        address initialGuardian,
        uint256 initialOutflowCap,
        uint256 changeDelay_
    ) {
        if (initialOwner == address(0) || initialSigner == address(0)) revert ZeroAddress();
        if (initialOutflowCap > MAX_OUTFLOW_CAP) revert CapTooLarge(initialOutflowCap);
        if (
            changeDelay_ > MAX_CHANGE_DELAY
                || (block.chainid == _BSC_MAINNET_CHAIN_ID && changeDelay_ < MIN_MAINNET_CHANGE_DELAY)
        ) revert InvalidChangeDelay(changeDelay_);
        owner = initialOwner;
        _signer = initialSigner;
        guardian = initialGuardian;
        changeDelay = changeDelay_;
        for (uint256 i; i < _CAP_WORD; ++i) {
            _outflowRing[i] = _EMPTY_BUCKET | (_EMPTY_BUCKET << _BUCKET_BITS) | (_EMPTY_BUCKET << (2 * _BUCKET_BITS));
        }
        _outflowRing[_CAP_WORD] = (initialOutflowCap << 128) | _EMPTY_BUCKET;
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        // Admin state is rebuildable from events alone, from the first block.
        emit OwnershipTransferred(address(0), initialOwner);
        emit SignerRotated(address(0), initialSigner);
        emit GuardianSet(initialGuardian);
        emit OutflowCapSet(initialOutflowCap);
        emit ChangeDelaySet(changeDelay_);
    }

    // ---------------------------------------------------------------- inflows

    /// @notice Pay the entry for a backend-signed level-1 placement. The payload executes at
    /// most once (its nonce), only by its user, only with exactly its amount, only until its
    /// deadline, only while not paused.
    function register(Registration calldata p, bytes calldata signature) external payable notEntered {
        // "Already done" outranks every other error, so a retry learns that first.
        _useNonce(p.nonce);
        uint256 state = _checkInflow(p.user, p.amount, p.deadline);
        bytes32 typehash = REGISTRATION_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            // Like the ABI decoder, refuse an address word with dirty upper bits (`user` was
            // checked by `_checkInflow`): the hash and the event take the words as they are.
            if shr(160, calldataload(add(p, 0x20))) { revert(0, 0) }
            // hashStruct = keccak(typehash ‖ the 7 static fields, in calldata order)
            let m := mload(0x40)
            mstore(m, typehash)
            calldatacopy(add(m, 0x20), p, 0xe0)
            structHash := keccak256(m, 0x100)
        }
        _verify(structHash, signature, state);
        _credit(state);
        bytes32 topic = RegistrationAccepted.selector;
        assembly ("memory-safe") {
            // RegistrationAccepted(user, referrer, slot, amount, planHash, nonce): the data
            // fields are contiguous in calldata.
            let m := mload(0x40)
            calldatacopy(m, add(p, 0x60), 0x60)
            log4(m, 0x60, topic, calldataload(p), calldataload(add(p, 0x20)), calldataload(add(p, 0x40)))
        }
    }

    /// @notice Pay a backend-signed retopup; same guarantees as `register`.
    function retopup(Retopup calldata p, bytes calldata signature) external payable notEntered {
        _useNonce(p.nonce);
        uint256 state = _checkInflow(p.user, p.amount, p.deadline);
        bytes32 typehash = RETOPUP_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typehash)
            calldatacopy(add(m, 0x20), p, 0xa0)
            structHash := keccak256(m, 0xc0)
        }
        _verify(structHash, signature, state);
        _credit(state);
        bytes32 topic = RetopupCompleted.selector;
        assembly ("memory-safe") {
            // RetopupCompleted(user, amount, planHash, nonce): amount, planHash, nonce are
            // contiguous in calldata.
            let m := mload(0x40)
            calldatacopy(m, add(p, 0x20), 0x60)
            log2(m, 0x60, topic, calldataload(p))
        }
    }

    // ---------------------------------------------------------------- outflows

    /// @notice Execute a backend-signed payout batch. Anyone may submit it; the signature is the
    /// authority. A batch id executes at most once, ever; its total counts against the rolling
    /// 24-hour outflow cap. Each recipient is called with a bounded gas stipend; a recipient
    /// that reverts or runs out of gas does not revert the batch: its amount becomes claimable.
    /// Every line pays a distinct, valid recipient a nonzero amount.
    function executeBatchPayouts(PayoutBatch calldata batch, bytes calldata signature) external nonReentrant {
        uint256 batchId = batch.batchId;
        // Marked first: a resubmitted batch that already executed gets `BatchAlreadyExecuted`
        // whatever else holds now (past deadline, paused), so the settlement worker can never
        // mistake an executed batch for an expired one. Any later revert undoes the mark.
        _markBatch(batchId);
        uint256 state = _state();
        if (state & _PAUSED_BIT != 0) revert ContractPaused();
        if (block.timestamp > batch.deadline) revert DeadlineExpired(batch.deadline, block.timestamp);
        Payout[] calldata payouts = batch.payouts;
        uint256 count = payouts.length;
        if (count == 0) revert EmptyBatch();
        _useNonce(batch.nonce);
        (bytes32 payoutsHash, uint256 total) = _hashPayouts(payouts);
        _verify(keccak256(abi.encode(PAYOUT_BATCH_TYPEHASH, batchId, payoutsHash, batch.nonce, batch.deadline)), signature, state);
        _recordOutflow(total);

        // Normally the events' unreserved BNB covers the batch, and then so does the balance
        // (balance >= _free + totalClaimable always). Only beyond it is the balance consulted:
        // deferred amounts already owed are never spendable, a surplus is, and that is logged.
        uint256 free = state >> _FREE_SHIFT;
        if (total > free) {
            uint256 required = totalClaimable + total;
            if (address(this).balance < required) revert InsufficientBalance(address(this).balance, required);
            emit SurplusDrawn(batchId, total - free);
            free = total;
        }
        _setFree(state, free - total);

        uint256 deferredTotal = _pay(batchId, payouts);
        if (deferredTotal != 0) totalClaimable += deferredTotal;
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

    // ---------------------------------------------------------------- admin: delayed changes

    /// @notice Propose `next` as the backend signer; executable after `changeDelay`.
    function proposeSigner(address next) external onlyOwner nonReentrant {
        if (next == address(0)) revert ZeroAddress();
        _propose(Change.Signer, uint160(next));
    }

    /// @notice Propose raising the outflow cap to `cap`; executable after `changeDelay`.
    /// Lowering is immediate: `lowerOutflowCap`.
    function proposeOutflowCap(uint256 cap) external onlyOwner nonReentrant {
        uint256 current = outflowCap();
        if (cap <= current) revert CapNotRaised(cap, current);
        if (cap > MAX_OUTFLOW_CAP) revert CapTooLarge(cap);
        _propose(Change.OutflowCap, cap);
    }

    /// @notice Propose `next` as guardian (`address(0)` unsets it); executable after
    /// `changeDelay`, and the current guardian can cancel it like any other change.
    function proposeGuardian(address next) external onlyOwner nonReentrant {
        _propose(Change.Guardian, uint160(next));
    }

    /// @notice Propose lifting the pause; executable after `changeDelay`. Only while paused,
    /// so a pause always holds at least one full delay after it was applied.
    function proposeUnpause() external onlyOwner nonReentrant {
        if (!_paused) revert ContractNotPaused();
        _propose(Change.Unpause, 0);
    }

    /// @notice Execute a proposed change whose delay has passed: exactly what was proposed.
    /// Works while paused (so a leaked signer can be replaced before the pool resumes).
    function executeChange(Change change) external onlyOwner nonReentrant {
        PendingChange memory pending = _pending[uint8(change)];
        if (pending.executableAt == 0) revert NoPendingChange(change);
        if (block.timestamp < pending.executableAt) revert ChangeNotReady(change, pending.executableAt);
        delete _pending[uint8(change)];
        uint256 value = pending.value;
        if (change == Change.Signer) {
            address next = address(uint160(value));
            emit SignerRotated(_signer, next);
            _signer = next;
        } else if (change == Change.OutflowCap) {
            _setOutflowCap(value);
            emit OutflowCapSet(value);
        } else if (change == Change.Guardian) {
            guardian = address(uint160(value));
            emit GuardianSet(address(uint160(value)));
        } else {
            // A pending Unpause exists only while paused: it is proposed only while paused and
            // nothing else unpauses.
            _paused = false;
            emit Unpaused(msg.sender);
        }
        emit ChangeExecuted(change, value);
    }

    /// @notice Cancel a pending change, at once. The guardian's veto: what it cancels never
    /// executes unless proposed again and waited for again.
    function cancelChange(Change change) external onlyGuardianOrOwner nonReentrant {
        if (_pending[uint8(change)].executableAt == 0) revert NoPendingChange(change);
        delete _pending[uint8(change)];
        emit ChangeCancelled(change, msg.sender);
    }

    // ---------------------------------------------------------------- admin: immediate

    /// @notice Lower the outflow cap, at once (only ever reduces what can leave).
    function lowerOutflowCap(uint256 cap) external onlyOwner nonReentrant {
        uint256 current = outflowCap();
        if (cap > current) revert CapNotLowered(cap, current);
        _setOutflowCap(cap);
        emit OutflowCapSet(cap);
    }

    /// @notice The global kill switch, at once: stops `register`, `retopup` and
    /// `executeBatchPayouts` (claims stay open). Lifting it takes `proposeUnpause` plus the delay.
    function pause() external onlyGuardianOrOwner nonReentrant {
        if (_paused) revert ContractPaused();
        _paused = true;
        emit Paused(msg.sender);
    }

    /// @notice Step one of two; `address(0)` cancels a pending transfer. There is no renounce.
    /// Not delayed: a new owner has exactly the bounded powers of the old one.
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

    /// @notice Rolling 24-hour outflow limit in wei.
    function outflowCap() public view returns (uint256) {
        return _outflowRing[_CAP_WORD] >> 128;
    }

    /// @notice The pending change of a kind: its value and when it becomes executable
    /// (`executableAt == 0`: none pending).
    function pendingChange(Change change) external view returns (uint256 value, uint256 executableAt) {
        PendingChange memory pending = _pending[uint8(change)];
        return (pending.value, pending.executableAt);
    }

    /// @notice BNB held beyond what the events account for: forced in (SELFDESTRUCT, a block
    /// reward), sent to the address before deployment, or sent back by a recipient from its own
    /// payout. Equals `balance − (Σ inflow events + Σ SurplusDrawn − Σ PayoutExecuted − Σ Claimed)`.
    /// Never part of a liability; a signed batch may spend it (`SurplusDrawn`).
    function surplus() external view returns (uint256) {
        return address(this).balance - _free - totalClaimable;
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
        (uint256 used, uint256 cap) = _outflowWindow(block.timestamp / OUTFLOW_BUCKET_SECONDS);
        uint256 capUnits = cap / OUTFLOW_UNIT;
        return capUnits > used ? (capUnits - used) * OUTFLOW_UNIT : 0;
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

    function _propose(Change change, uint256 value) private {
        if (_pending[uint8(change)].executableAt != 0) revert ChangeAlreadyPending(change);
        uint256 executableAt = block.timestamp + changeDelay;
        _pending[uint8(change)] = PendingChange(uint192(value), uint64(executableAt));
        emit ChangeProposed(change, value, executableAt);
    }

    function _setOutflowCap(uint256 cap) private {
        _outflowRing[_CAP_WORD] = (_outflowRing[_CAP_WORD] & _CAP_MASK) | (cap << 128);
    }

    /// The signer / pause / `_free` word, read once per call.
    function _state() private view returns (uint256 state) {
        assembly ("memory-safe") {
            state := sload(_signer.slot)
        }
    }

    /// Writes `_free` into the word `state` was read from (the signer and the pause flag as read).
    function _setFree(uint256 state, uint256 free) private {
        if (free > type(uint88).max) revert AmountOverflow(); // more than all BNB in existence
        assembly ("memory-safe") {
            sstore(_signer.slot, or(and(state, 0xffffffffffffffffffffffffffffffffffffffffff), shl(168, free)))
        }
    }

    function _checkInflow(address user, uint256 amount, uint256 deadline) private view returns (uint256 state) {
        state = _state();
        if (state & _PAUSED_BIT != 0) revert ContractPaused();
        if (msg.sender != user) revert SenderNotUser(msg.sender, user);
        if (msg.value != amount) revert WrongValue(msg.value, amount);
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
    }

    /// Inflows are what the events account for: `_free += msg.value`.
    function _credit(uint256 state) private {
        _setFree(state, (state >> _FREE_SHIFT) + msg.value);
    }

    function _useNonce(uint256 nonce) private {
        uint256 bitmap;
        assembly ("memory-safe") {
            bitmap := nonceBitmap.slot
        }
        _setBit(bitmap, nonce, NonceAlreadyUsed.selector);
    }

    function _markBatch(uint256 batchId) private {
        uint256 bitmap;
        assembly ("memory-safe") {
            bitmap := _batchBitmap.slot
        }
        _setBit(bitmap, batchId, BatchAlreadyExecuted.selector);
    }

    /// Sets bit `n & 255` of word `n >> 8` of the bitmap mapping at `bitmap`, or reverts
    /// `error(n)` if it is already set.
    function _setBit(uint256 bitmap, uint256 n, bytes4 error) private {
        assembly ("memory-safe") {
            mstore(0, shr(8, n))
            mstore(0x20, bitmap)
            let slot := keccak256(0, 0x40)
            let bits := sload(slot)
            let bit := shl(and(n, 0xff), 1)
            if and(bits, bit) {
                mstore(0, error)
                mstore(0x04, n)
                revert(0, 0x24)
            }
            sstore(slot, or(bits, bit))
        }
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

    /// Accepts exactly 65 bytes (r, s, v) with v in {27, 28} and low s, and only the signer in
    /// `state`.
    function _verify(bytes32 structHash, bytes calldata signature, uint256 state) private view {
        if (signature.length != 65) revert InvalidSignatureLength(signature.length);
        bytes32 digest = _digest(structHash);
        address recovered;
        uint256 s;
        uint256 v;
        assembly ("memory-safe") {
            s := calldataload(add(signature.offset, 0x20))
            v := byte(0, calldataload(add(signature.offset, 0x40)))
            let m := mload(0x40)
            mstore(m, digest)
            mstore(add(m, 0x20), v)
            mstore(add(m, 0x40), calldataload(signature.offset))
            mstore(add(m, 0x60), s)
            // The precompile returns nothing for a signature that recovers no key.
            if staticcall(gas(), 1, m, 0x80, 0, 0x20) {
                recovered := mul(mload(0), eq(returndatasize(), 0x20))
            }
        }
        if (s > _HALF_CURVE_ORDER) revert SignatureHighS();
        if (v != 27 && v != 28) revert InvalidSignatureV(uint8(v));
        if (recovered == address(0)) revert InvalidSignature();
        if (recovered != address(uint160(state))) revert UnauthorizedSigner(recovered);
    }

    /// EIP-712 hash of `Payout[]` (keccak of the concatenated hashStruct of each element), the
    /// batch total, and line validation: the recipient nonzero, without dirty upper bits, not
    /// this contract (it cannot receive, so the amount would be claimable by nobody) and not
    /// already in the batch; the amount nonzero; no overflow in the total.
    ///
    /// Repeated recipients: a Bloom filter in memory (65,536 bits, more past 512 lines), one bit
    /// per line at the address's low 16+ bits, says "certainly new" for almost every line at
    /// the cost of one memory read and write; only on a hit (a real repeat, or about one batch
    /// of 200 random addresses in four) are the earlier lines compared one by one. All refusals
    /// and filter hits share one branch; `_refuse` then names the first refused line and why.
    function _hashPayouts(Payout[] calldata payouts) private view returns (bytes32 payoutsHash, uint256 total) {
        uint256 refused; // 1 + the index of the first refused line
        {
            // In its own block (fewer stack slots below); the next block reads it from there,
            // and no Solidity code between them touches memory.
            bytes32 typehash = PAYOUT_TYPEHASH;
            assembly ("memory-safe") {
                mstore(mload(0x40), typehash)
            }
        }
        assembly ("memory-safe") {
            // Temporary memory from the free pointer: a 3-word hashing buffer (typehash ‖
            // recipient ‖ amount), one word per line for the element hashes, then the filter,
            // zeroed (memory past the free pointer may hold leftovers).
            let buf := mload(0x40)
            let dst := add(buf, 0x60)
            let filter := add(dst, shl(5, payouts.length))
            // 2^16 bits (256 words), doubled while there are more than 2 lines per word (past
            // 512 lines) so that hits stay rare in big batches. `wordMask` picks the word, as a
            // byte offset, from recipient >> 3; the bit is the recipient's low 8 bits.
            let wordMask := 0x1fe0
            for {} lt(shr(4, add(wordMask, 0x20)), payouts.length) {} { wordMask := or(shl(1, wordMask), 0x20) }
            calldatacopy(filter, calldatasize(), add(wordMask, 0x20))
            let src := payouts.offset
            let end := add(src, shl(6, payouts.length))
            for {} lt(src, end) { src := add(src, 0x40) } {
                let recipient := calldataload(src)
                let next := add(total, calldataload(add(src, 0x20)))
                let word := add(filter, and(shr(3, recipient), wordMask))
                let bit := shl(and(recipient, 0xff), 1)
                // Recipient 0 or >= 2^160 (one compare: recipient - 1 wraps for 0), this
                // contract, amount 0 or an overflow (both mean next <= total), or a filter hit.
                if or(
                    or(gt(sub(recipient, 1), 0xfffffffffffffffffffffffffffffffffffffffe), eq(recipient, address())),
                    or(iszero(gt(next, total)), and(mload(word), bit))
                ) {
                    if or(
                        or(gt(sub(recipient, 1), 0xfffffffffffffffffffffffffffffffffffffffe), eq(recipient, address())),
                        iszero(gt(next, total))
                    ) { break }
                    // A filter hit: compare with every earlier line, four per step.
                    let seen := 0
                    let at := payouts.offset
                    for {} lt(add(at, 0xc0), src) { at := add(at, 0x100) } {
                        seen := or(
                            seen,
                            or(
                                or(eq(calldataload(at), recipient), eq(calldataload(add(at, 0x40)), recipient)),
                                or(eq(calldataload(add(at, 0x80)), recipient), eq(calldataload(add(at, 0xc0)), recipient))
                            )
                        )
                    }
                    for {} lt(at, src) { at := add(at, 0x40) } { seen := or(seen, eq(calldataload(at), recipient)) }
                    if seen { break }
                }
                mstore(word, or(mload(word), bit))
                calldatacopy(add(buf, 0x20), src, 0x40)
                mstore(dst, keccak256(buf, 0x60))
                total := next
                dst := add(dst, 0x20)
            }
            if lt(src, end) { refused := add(1, shr(6, sub(src, payouts.offset))) }
            payoutsHash := keccak256(add(buf, 0x60), shl(5, payouts.length))
        }
        if (refused != 0) _refuse(payouts, refused - 1);
    }

    /// Reverts naming why line `index` was refused; every earlier line passed every check. The
    /// rare path, so plain and slow, but linear: a refused batch of any size names its line.
    function _refuse(Payout[] calldata payouts, uint256 index) private view {
        uint256 recipient; // the raw calldata word: dirty upper bits are reported as sent
        uint256 amount;
        assembly ("memory-safe") {
            recipient := calldataload(add(payouts.offset, shl(6, index)))
            amount := calldataload(add(payouts.offset, add(shl(6, index), 0x20)))
        }
        if (recipient == 0 || recipient >> 160 != 0 || recipient == uint256(uint160(address(this)))) {
            bytes4 selector = InvalidRecipient.selector;
            assembly ("memory-safe") {
                mstore(0, selector)
                mstore(0x04, index)
                mstore(0x24, recipient)
                revert(0, 0x44)
            }
        }
        if (amount == 0) revert ZeroAmount(index);
        for (uint256 j; j < index; ++j) {
            uint256 earlier;
            assembly ("memory-safe") {
                earlier := calldataload(add(payouts.offset, shl(6, j)))
            }
            if (earlier == recipient) revert DuplicateRecipient(index, address(uint160(recipient)));
        }
        revert AmountOverflow(); // what is left: the total overflowed at this line
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
            // One test per line for both "lines left" and "gas enough for a full stipend".
            for {} and(lt(src, end), gt(gas(), sub(_MIN_GAS_PER_PAYOUT, 1))) { src := add(src, 0x40) } {
                let recipient := calldataload(src)
                let amount := calldataload(add(src, 0x20))
                mstore(0, amount) // the event's data
                // No return data is copied: a recipient cannot make the batch pay for a return bomb.
                if iszero(call(PAYOUT_GAS_STIPEND, recipient, amount, 0, 0, 0, 0)) {
                    mstore(0, recipient)
                    mstore(0x20, claimable.slot)
                    let slot := keccak256(0, 0x40)
                    sstore(slot, add(sload(slot), amount))
                    deferredTotal := add(deferredTotal, amount)
                    mstore(0, amount)
                    log3(0, 0x20, deferredTopic, batchId, recipient)
                    continue
                }
                log3(0, 0x20, paidTopic, batchId, recipient)
            }
            // Left early: too little gas left for line `index` to get its full stipend.
            if lt(src, end) {
                mstore(0, lowGas)
                mstore(0x04, shr(6, sub(src, payouts.offset)))
                revert(0, 0x24)
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
    /// to the current hour's bucket. 9 storage reads (the cap among them) and one write per
    /// batch, whatever the batch size.
    function _recordOutflow(uint256 total) private {
        uint256 hour = block.timestamp / OUTFLOW_BUCKET_SECONDS;
        uint256 units = total / OUTFLOW_UNIT + (total % OUTFLOW_UNIT == 0 ? 0 : 1);
        (uint256 used, uint256 cap) = _outflowWindow(hour);
        uint256 capUnits = cap / OUTFLOW_UNIT;
        if (used > capUnits || units > capUnits - used) {
            revert OutflowCapExceeded(total, capUnits > used ? (capUnits - used) * OUTFLOW_UNIT : 0);
        }

        uint256 index = hour % _WINDOW_BUCKETS;
        uint256 shift = (index % 3) * _BUCKET_BITS;
        uint256 word = _outflowRing[index / 3];
        uint256 bucket = (word >> shift) & _BUCKET_MASK;
        uint256 tag = hour & _TAG_MASK;
        if (bucket >> 61 == tag) units += bucket & _AMOUNT_MASK;
        if (units > _AMOUNT_MASK) revert AmountOverflow(); // > 2.3 billion BNB in one hour
        _outflowRing[index / 3] = (word & ~(_BUCKET_MASK << shift)) | (((tag << 61) | units) << shift);
    }

    /// The outflow in gwei in the window ending at `hour` (the current hour and the 24 before
    /// it), and the cap in wei. A bucket is in the window iff `(tagNow - tag) mod 2^24 < 25`.
    function _outflowWindow(uint256 hour) private view returns (uint256 used, uint256 cap) {
        assembly ("memory-safe") {
            // Literals: bucket = tag (24 bits) << 61 | gwei (61 bits), 85 bits apart; 25 =
            // _WINDOW_BUCKETS; 8 = _CAP_WORD. An empty bucket counts 0 whatever its tag.
            function inWindow(bucket, tagNow) -> amount {
                amount := mul(
                    lt(and(sub(tagNow, shr(61, bucket)), 0xffffff), 25), and(bucket, 0x1fffffffffffffff)
                )
            }
            let tagNow := and(hour, 0xffffff)
            let slot := _outflowRing.slot
            for { let last := add(slot, 8) } lt(slot, last) { slot := add(slot, 1) } {
                let word := sload(slot)
                used := add(
                    used,
                    add(
                        inWindow(and(word, 0x1fffffffffffffffffffff), tagNow),
                        add(inWindow(and(shr(85, word), 0x1fffffffffffffffffffff), tagNow), inWindow(shr(170, word), tagNow))
                    )
                )
            }
            let word := sload(slot)
            used := add(used, inWindow(and(word, 0x1fffffffffffffffffffff), tagNow))
            cap := shr(128, word)
        }
    }
}
